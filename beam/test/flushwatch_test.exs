defmodule FlushwatchTest do
  @moduledoc "The contract's main rules, from Elixir, on a mock clock."
  use ExUnit.Case, async: true
  import Flushwatch.TestHelpers

  doctest Flushwatch

  describe "the watermark" do
    test "is the minimum over pending shapes, exact at transaction granularity" do
      t = mock_tracker(start_at: 100)
      {:ok, a} = Flushwatch.register(t, "a")
      {:ok, b} = Flushwatch.register(t, "b")

      assert {:ok, %{tracked: 2, skipped: 0, previous: 100}} = Flushwatch.track(t, 0x1A0, [a, b])
      assert {:ok, %{previous: 0x1A0}} = Flushwatch.track(t, 0x1F8, [a])
      assert Flushwatch.scan(t).watermark == 100

      :ok = Flushwatch.flushed(b, 0x1A0)
      assert %{watermark: 100, pinned_by: "a"} = Flushwatch.scan(t)

      # a wrote all of 0x1A0 but only part of 0x1F8: it reports 0x1F8's previous.
      :ok = Flushwatch.flushed(a, 0x1A0)
      assert Flushwatch.scan(t).watermark == 0x1A0
      :ok = Flushwatch.flushed(a, 0x1F8)
      assert %{watermark: 0x1F8, pending: 0, pinned_by: nil} = Flushwatch.scan(t)
      assert Flushwatch.watermark(t) == 0x1F8
    end

    test "a commit touching no shape advances last_seen and, when caught up, the watermark" do
      t = mock_tracker()
      assert {:ok, %{tracked: 0, skipped: 0, previous: 0}} = Flushwatch.track(t, 7, [])
      assert Flushwatch.last_seen(t) == 7
      assert Flushwatch.watermark(t) == 0, "the watermark changes only in a scan"
      Flushwatch.scan(t)
      assert Flushwatch.watermark(t) == 7
    end

    test "a shape made pending counts as durable up to the commit before" do
      t = mock_tracker()
      {:ok, a} = Flushwatch.register(t, "a")
      {:ok, _} = Flushwatch.track(t, 5, [])
      {:ok, %{previous: 5}} = Flushwatch.track(t, 9, [a])
      assert Flushwatch.scan(t).watermark == 5
    end

    test "a report beyond what was sent is clamped; a later commit still makes it pending" do
      t = mock_tracker()
      {:ok, w} = Flushwatch.register(t, "a")
      {:ok, _} = Flushwatch.track(t, 10, [w])
      :ok = Flushwatch.flushed(w, 99)
      {:ok, _} = Flushwatch.track(t, 20, [w])
      assert Flushwatch.scan(t).watermark == 10
      assert %{sent: 20, flushed: 10, pending: true, lag: 10} = Flushwatch.status(t, "a")
    end

    test "a lower report is ignored and the watermark never goes back" do
      t = mock_tracker()
      {:ok, w} = Flushwatch.register(t, "a")
      {:ok, _} = Flushwatch.track(t, 10, [w])
      {:ok, _} = Flushwatch.track(t, 20, [w])
      :ok = Flushwatch.flushed(w, 20)
      assert Flushwatch.scan(t).watermark == 20
      :ok = Flushwatch.flushed(w, 10)
      assert %{flushed: 20, pending: false} = Flushwatch.status(t, "a")
      assert Flushwatch.scan(t).watermark == 20
    end

    test "the largest start_at is legal" do
      max = 0xFFFF_FFFF_FFFF_FFFF
      t = mock_tracker(start_at: max)
      assert Flushwatch.watermark(t) == max
      assert {:error, {:offset_regression, ^max, ^max}} = Flushwatch.track(t, max, [])
    end
  end

  describe "bad input" do
    test "commits that do not advance, or zero, are errors that change nothing" do
      t = mock_tracker()
      {:ok, w} = Flushwatch.register(t, "a")
      assert Flushwatch.track(t, 0, [w]) == {:error, :zero_commit}
      {:ok, _} = Flushwatch.track(t, 5, [])
      assert Flushwatch.track(t, 5, [w]) == {:error, {:offset_regression, 5, 5}}
      assert Flushwatch.track(t, 3, [w]) == {:error, {:offset_regression, 5, 3}}
      assert %{sent: 0, pending: false} = Flushwatch.status(t, "a")
      assert Flushwatch.last_seen(t) == 5
    end

    test "a duplicate key is refused and the shape is untouched" do
      t = mock_tracker()
      {:ok, w} = Flushwatch.register(t, "a")
      {:ok, _} = Flushwatch.track(t, 4, [w])
      assert Flushwatch.register(t, "a") == {:error, :duplicate_shape}
      assert %{sent: 4, pending: true} = Flushwatch.status(t, "a")
      refute Flushwatch.evicted?(w)
    end

    test "gone shapes, unknown keys and another tracker's ids are skipped, each once" do
      t = mock_tracker()
      other = mock_tracker()
      {:ok, w} = Flushwatch.register(t, "a")
      {:ok, foreign} = Flushwatch.register(other, "a")
      {:ok, gone} = Flushwatch.register(t, "gone")
      gone_id = Flushwatch.id(gone)
      true = Flushwatch.remove(t, "gone")

      assert {:ok, %{tracked: 1, skipped: 3}} =
               Flushwatch.track(t, 1, [
                 w,
                 Flushwatch.id(w),
                 "a",
                 Flushwatch.id(foreign),
                 gone_id,
                 "nobody",
                 "nobody"
               ])

      assert %{sent: 0} = Flushwatch.status(other, "a"), "the other tracker's shape is untouched"
    end

    test "wrong types raise ArgumentError and change nothing" do
      t = mock_tracker()
      {:ok, w} = Flushwatch.register(t, "a")
      assert_raise ArgumentError, fn -> Flushwatch.register(t, :a) end
      assert_raise ArgumentError, fn -> Flushwatch.track(t, -1, [w]) end
      assert_raise ArgumentError, fn -> Flushwatch.track(t, 0x1_0000_0000_0000_0000, [w]) end
      assert_raise ArgumentError, fn -> Flushwatch.track(t, 1, [w, :nope]) end
      assert_raise ArgumentError, fn -> Flushwatch.track(t, 1, :nope) end
      assert_raise ArgumentError, fn -> Flushwatch.track(t, 1, [w | :nope]) end
      assert_raise ArgumentError, fn -> Flushwatch.flushed(w, -5) end
      assert_raise ArgumentError, fn -> Flushwatch.flushed(:not_a_writer, 5) end
      assert_raise ArgumentError, fn -> Flushwatch.flushed(t.resource, 5) end
      assert_raise ArgumentError, fn -> Flushwatch.watermark(:nope) end
      assert_raise ArgumentError, fn -> Flushwatch.new(grace: -1) end
      assert_raise ArgumentError, fn -> Flushwatch.new(stall_policy: :shrug) end
      assert_raise ArgumentError, fn -> Flushwatch.new(bogus: 1) end
      assert_raise ArgumentError, fn -> Flushwatch.advance(elem(Flushwatch.new(), 1), 5) end
      assert Flushwatch.last_seen(t) == 0
      assert %{sent: 0} = Flushwatch.status(t, "a")
    end

    test "invalid configurations are error tuples; zero grace and challenge are valid" do
      assert Flushwatch.new(scan_interval: 0) == {:error, {:invalid_config, :zero_scan_interval}}

      assert Flushwatch.new(event_capacity: 0) ==
               {:error, {:invalid_config, :zero_event_capacity}}

      assert {:ok, _} = Flushwatch.new(grace: 0, challenge: 0)
    end

    test "a panic inside the NIF is an Erlang error, not a crashed VM" do
      assert_raise ErlangError, ~r/nif_panicked/, fn -> Flushwatch.Native.debug_panic() end
      t = mock_tracker()
      assert Flushwatch.watermark(t) == 0
    end
  end

  describe "shapes ending" do
    test "remove ends a shape: it stops counting, its writer is inert, its key is free" do
      t = mock_tracker()
      {:ok, w} = Flushwatch.register(t, "a")
      {:ok, _} = Flushwatch.track(t, 3, [w])
      assert Flushwatch.remove(t, "a")
      refute Flushwatch.remove(t, "a")
      assert Flushwatch.evicted?(w)
      assert Flushwatch.status(t, "a") == nil
      assert Flushwatch.id_of(t, "a") == nil
      assert Flushwatch.scan(t).watermark == 3
      assert {:ok, w2} = Flushwatch.register(t, "a")
      :ok = Flushwatch.flushed(w, 3)
      refute Flushwatch.evicted?(w2)
      assert Flushwatch.events(t) == [], "a removal is deliberate: no event"
    end

    test "retire ends a shape quietly even when pending" do
      t = mock_tracker()
      {:ok, w} = Flushwatch.register(t, "a")
      {:ok, _} = Flushwatch.track(t, 3, [w])
      :ok = Flushwatch.retire(w)
      assert Flushwatch.evicted?(w)
      :ok = Flushwatch.flushed(w, 3)
      assert Flushwatch.scan(t).watermark == 3
      assert Flushwatch.events(t) == []
      assert {:ok, _} = Flushwatch.register(t, "a")
    end

    test "key/1, id/1 and id_of/2 name the same shape" do
      t = mock_tracker()
      {:ok, w} = Flushwatch.register(t, "a")
      assert Flushwatch.key(w) == "a"
      {:ok, %{tracked: 1}} = Flushwatch.track(t, 1, [Flushwatch.id_of(t, "a")])
      {:ok, %{tracked: 1}} = Flushwatch.track(t, 2, [Flushwatch.id(w)])
      assert %{sent: 2} = Flushwatch.status(t, "a")
    end
  end

  describe "stall detection on a mock clock" do
    test "suspected after grace, stalled and evicted after challenge; the subscriber is told" do
      t = mock_tracker(grace: 10_000, challenge: 2_000)
      ref = t.ref
      :ok = Flushwatch.subscribe(t)
      {:ok, stuck} = Flushwatch.register(t, "orders")
      {:ok, ok} = Flushwatch.register(t, "users")
      {:ok, _} = Flushwatch.track(t, 5, [stuck, ok])
      :ok = Flushwatch.flushed(ok, 5)

      :ok = Flushwatch.advance(t, 10_000)
      assert %{suspected: [], watermark: 0} = Flushwatch.scan(t), "idle == grace is not overdue"
      :ok = Flushwatch.advance(t, 1)
      assert %{suspected: ["orders"], stalled: []} = Flushwatch.scan(t)
      assert Flushwatch.suspected?(stuck)
      refute Flushwatch.suspected?(ok)
      assert_receive {:flushwatch, ^ref, {:suspected, "orders", 10_001}}

      :ok = Flushwatch.advance(t, 2_000)
      assert %{stalled: []} = Flushwatch.scan(t), "silence == challenge is not a stall"
      :ok = Flushwatch.advance(t, 1)
      assert %{stalled: ["orders"], watermark: 5} = Flushwatch.scan(t)
      assert Flushwatch.evicted?(stuck)

      assert_receive {:flushwatch, ^ref,
                      {:stalled, "orders", %{evicted: true, flushed: 0, sent: 5, idle_ms: 12_002}}}

      assert_receive {:flushwatch, ^ref, {:watermark, 5}}
      assert %{stalled: 1, evicted: 1} = Flushwatch.stats(t)
      assert {:ok, _} = Flushwatch.register(t, "orders"), "the key is free at once"
    end

    test "defer and progress answer a challenge" do
      t = mock_tracker(grace: 100, challenge: 50)
      {:ok, w} = Flushwatch.register(t, "a")
      {:ok, _} = Flushwatch.track(t, 5, [w])
      {:ok, _} = Flushwatch.track(t, 6, [w])
      :ok = Flushwatch.advance(t, 101)
      assert %{suspected: ["a"]} = Flushwatch.scan(t)
      :ok = Flushwatch.defer(w)
      refute Flushwatch.suspected?(w)
      :ok = Flushwatch.advance(t, 100)
      assert %{stalled: [], suspected: []} = Flushwatch.scan(t)
      :ok = Flushwatch.advance(t, 1)
      assert %{suspected: ["a"]} = Flushwatch.scan(t)
      :ok = Flushwatch.flushed(w, 5)
      :ok = Flushwatch.advance(t, 60)
      assert %{stalled: []} = Flushwatch.scan(t)
      refute Flushwatch.evicted?(w)
      assert %{pending: true, idle_ms: 60, suspected: false} = Flushwatch.status(t, "a")
    end

    test "under :report the shape stays pinned and the detector re-arms" do
      t = mock_tracker(grace: 100, challenge: 50, stall_policy: :report)
      {:ok, w} = Flushwatch.register(t, "a")
      {:ok, _} = Flushwatch.track(t, 5, [w])
      :ok = Flushwatch.advance(t, 101)
      Flushwatch.scan(t)
      :ok = Flushwatch.advance(t, 51)
      assert %{stalled: ["a"], watermark: 0} = Flushwatch.scan(t)
      refute Flushwatch.evicted?(w)
      assert %{stalled: []} = Flushwatch.scan(t), "never an event every scan"
      :ok = Flushwatch.advance(t, 101)
      assert %{suspected: ["a"]} = Flushwatch.scan(t)
      :ok = Flushwatch.advance(t, 51)
      assert %{stalled: ["a"]} = Flushwatch.scan(t)

      # At most one unread :stalled per shape: the second stall is counted, not queued.
      assert [
               {:suspected, "a", 101},
               {:stalled, "a", %{evicted: false, idle_ms: 152}},
               {:suspected, "a", _}
             ] = Flushwatch.events(t)

      assert %{stalled: 2, evicted: 0} = Flushwatch.stats(t)

      # `w` is used here, so it stayed alive through the test: a writer no term refers to
      # any more is collected and its shape ends (see lifetime_test.exs).
      refute Flushwatch.evicted?(w)
    end

    test "pinned_by and stats describe the shape holding the watermark" do
      t = mock_tracker()
      {:ok, a} = Flushwatch.register(t, "a")
      {:ok, b} = Flushwatch.register(t, "b")
      {:ok, _} = Flushwatch.track(t, 3, [a, b])
      {:ok, _} = Flushwatch.track(t, 8, [a, b])
      :ok = Flushwatch.flushed(a, 8)
      :ok = Flushwatch.flushed(b, 3)
      :ok = Flushwatch.advance(t, 40)
      assert %{watermark: 3, last_seen: 8, pending: 1, registered: 2} = Flushwatch.scan(t)
      assert %{key: "b", flushed: 3, sent: 8, lag: 5, pending: true} = Flushwatch.pinned_by(t)

      assert %{registered: 2, pending: 1, scans: 1, last_seen: 8, watermark: 3} =
               Flushwatch.stats(t)
    end
  end
end
