defmodule Flushwatch.LifetimeTest do
  @moduledoc """
  The BEAM's lifetimes do the liveness work: real process exits end shapes, a collected
  tracker stops its thread, a wedged consumer is evicted within the documented bound.
  Not async: it measures time.
  """
  use ExUnit.Case, async: false
  import Flushwatch.TestHelpers

  # A consumer process that registers its own writer (so no other process holds it), tells
  # the parent, then waits: flushing on request, or never (wedged).
  defp consumer(t, key) do
    parent = self()

    pid =
      spawn(fn ->
        {:ok, w} = Flushwatch.register(t, key)
        send(parent, {:registered, self()})
        loop(w)
      end)

    assert_receive {:registered, ^pid}
    pid
  end

  defp loop(w) do
    receive do
      {:flush, pos} ->
        :ok = Flushwatch.flushed(w, pos)
        loop(w)

      {:evicted?, from} ->
        send(from, {:evicted, Flushwatch.evicted?(w)})
        loop(w)
    end
  end

  test "a consumer killed with unflushed commits: :writer_down, :dropped_pending; the key is free" do
    t = mock_tracker()
    ref = t.ref
    :ok = Flushwatch.subscribe(t)
    pid = consumer(t, "orders")
    {:ok, %{tracked: 1}} = Flushwatch.track(t, 7, ["orders"])

    Process.exit(pid, :kill)

    assert_receive {:flushwatch, ^ref, {:writer_down, "orders", :dropped_pending}}, 2_000
    assert Flushwatch.status(t, "orders") == nil
    assert Flushwatch.scan(t).watermark == 7, "it no longer pins the watermark"
    assert {:ok, _} = Flushwatch.register(t, "orders")
    assert %{writers_down: 1} = Flushwatch.stats(t)
  end

  test "a consumer that exits caught up ends its shape quietly" do
    t = mock_tracker()
    ref = t.ref
    :ok = Flushwatch.subscribe(t)
    pid = consumer(t, "orders")
    {:ok, _} = Flushwatch.track(t, 7, ["orders"])
    send(pid, {:flush, 7})
    eventually(fn -> Flushwatch.status(t, "orders").pending == false end)
    Process.exit(pid, :kill)

    eventually(fn -> Flushwatch.status(t, "orders") == nil end)
    assert Flushwatch.scan(t).watermark == 7
    refute_receive {:flushwatch, ^ref, {:writer_down, _, _}}, 100
    assert %{writers_down: 0} = Flushwatch.stats(t)
  end

  test "a writer dropped by a live holder is collected once the holder collects its garbage" do
    t = mock_tracker()
    parent = self()

    holder =
      spawn(fn ->
        {:ok, w} = Flushwatch.register(t, "orders")
        send(parent, {:id, Flushwatch.id(w)})
        # Forget the writer, then collect on request: the resource goes with the garbage.
        receive do
          :gc -> :erlang.garbage_collect()
        end

        send(parent, :collected)

        receive do
          :stop -> :ok
        end
      end)

    assert_receive {:id, id}
    {:ok, %{tracked: 1}} = Flushwatch.track(t, 3, [id])
    send(holder, :gc)
    assert_receive :collected
    assert Process.alive?(holder)
    eventually(fn -> Flushwatch.status(t, "orders") == nil end)
    assert [{:writer_down, "orders", :dropped_pending}] = Flushwatch.events(t)
    send(holder, :stop)
  end

  test "a collected tracker stops its thread" do
    parent = self()

    owner =
      spawn(fn ->
        {:ok, t} = Flushwatch.new(scan_interval: 5)
        {:ok, w} = Flushwatch.register(t, "a")
        {:ok, _} = Flushwatch.track(t, 1, [w])
        :ok = Flushwatch.subscribe(t)
        # A probe sees the thread without keeping the tracker alive.
        send(parent, {:probe, Flushwatch.Native.probe(t.resource)})

        receive do
          :stop -> :ok
        end
      end)

    assert_receive {:probe, probe}
    assert Flushwatch.Native.probe_running(probe)
    Process.sleep(30)
    assert Flushwatch.Native.probe_running(probe), "alive while its owner holds it"
    send(owner, :stop)
    eventually(fn -> not Flushwatch.Native.probe_running(probe) end)
  end

  test "a wedged consumer (alive, never flushing) is suspected, stalled and evicted within the bound" do
    grace = 150
    challenge = 60
    interval = 20
    # grace + challenge + 2 * scan_interval + r, r <= scan_interval.
    bound = grace + challenge + 3 * interval
    # One scan's duration plus message delivery, on a shared machine.
    slack = 40

    {:ok, t} = Flushwatch.new(grace: grace, challenge: challenge, scan_interval: interval)
    ref = t.ref
    :ok = Flushwatch.subscribe(t)
    healthy = consumer(t, "healthy")
    wedged = consumer(t, "wedged")
    # Let the scanner's first scan happen before the clock starts (the bound counts from the
    # later of the last progress and the first scan).
    eventually(fn -> Flushwatch.stats(t).scans > 0 end)

    t0 = System.monotonic_time(:millisecond)
    {:ok, _} = Flushwatch.track(t, 11, ["healthy", "wedged"])
    send(healthy, {:flush, 11})

    assert_receive {:flushwatch, ^ref, {:suspected, "wedged", idle}}, bound + slack
    suspected_at = System.monotonic_time(:millisecond) - t0
    # Whole milliseconds, truncated: idle > grace shows as >= grace.
    assert idle >= grace
    assert suspected_at > grace

    assert_receive {:flushwatch, ^ref, {:stalled, "wedged", %{evicted: true, sent: 11}}},
                   bound + slack

    stalled_at = System.monotonic_time(:millisecond) - t0
    assert stalled_at > grace + challenge, "never before grace + challenge"
    assert stalled_at <= bound + slack, "stalled after #{stalled_at} ms; bound #{bound} ms"

    assert_receive {:flushwatch, ^ref, {:watermark, 11}}, 2 * interval + slack
    assert Process.alive?(wedged)
    send(wedged, {:evicted?, self()})
    assert_receive {:evicted, true}
    send(healthy, {:evicted?, self()})
    assert_receive {:evicted, false}
    refute_received {:flushwatch, ^ref, {_, "healthy", _}}
  end
end
