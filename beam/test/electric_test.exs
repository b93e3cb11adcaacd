defmodule Flushwatch.ElectricTest do
  @moduledoc """
  The behaviour Electric's FlushTracker tests describe, ported to the adapter and read the
  exact way: where Electric acknowledges `tx - 1` while something is pending, the adapter
  acknowledges the last commit that is durable everywhere, and says nothing when that did
  not move.
  """
  use ExUnit.Case, async: true

  alias Flushwatch.Electric

  setup do
    parent = self()

    tracker = Electric.new(notify_fn: fn lsn -> send(parent, {:ack, lsn}) end, clock: :mock)

    %{tracker: tracker}
  end

  defp txn(lsn, last_op \\ 0),
    do: %{lsn: lsn, last_log_offset: {lsn, last_op}, commit: %{}}

  defp acks do
    receive do
      {:ack, lsn} -> [lsn | acks()]
    after
      0 -> []
    end
  end

  describe "transaction fragments" do
    test "a commit touching no shape is acknowledged at once", %{tracker: tracker} do
      tracker = Electric.handle_txn_fragment(tracker, txn(1), [])
      assert acks() == [1]
      assert Electric.empty?(tracker)
    end

    test "a commit with unflushed shapes is not acknowledged", %{tracker: tracker} do
      tracker = Electric.handle_txn_fragment(tracker, txn(1), ["shape1"])
      assert acks() == []
      refute Electric.empty?(tracker)
    end

    test "fragments without a commit are ignored", %{tracker: tracker} do
      fragment = %{lsn: 1, last_log_offset: {1, 0}, commit: nil}
      tracker = Electric.handle_txn_fragment(tracker, fragment, ["shape1"])
      tracker = Electric.handle_txn_fragment(tracker, Map.delete(fragment, :commit), ["shape1"])
      assert acks() == []
      assert Electric.empty?(tracker)
      assert Flushwatch.last_seen(Electric.tracker(tracker)) == 0

      # ...and do not disturb what follows.
      tracker = Electric.handle_txn_fragment(tracker, txn(2, 10), ["shape1"])
      tracker = Electric.handle_flush_notification(tracker, "shape1", {2, 10})
      assert acks() == [2]
      assert Electric.empty?(tracker)
    end

    test "commits must advance", %{tracker: tracker} do
      tracker = Electric.handle_txn_fragment(tracker, txn(5), [])
      assert_raise ArgumentError, fn -> Electric.handle_txn_fragment(tracker, txn(5), []) end
      assert_raise ArgumentError, fn -> Electric.handle_txn_fragment(tracker, %{lsn: 6}, []) end
    end
  end

  describe "flush notifications" do
    test "the last shape catching up acknowledges its commit", %{tracker: tracker} do
      tracker
      |> Electric.handle_txn_fragment(txn(1, 10), ["shape1"])
      |> Electric.handle_flush_notification("shape1", {1, 10})

      assert acks() == [1]
    end

    test "the last shape catching up acknowledges the last commit seen", %{tracker: tracker} do
      tracker
      |> Electric.handle_txn_fragment(txn(1, 10), ["shape1"])
      |> Electric.handle_txn_fragment(txn(3, 10), [])
      |> Electric.handle_flush_notification("shape1", {1, 10})

      assert acks() == [3]
    end

    test "a partly flushed transaction acknowledges the commit before it, never tx - 1",
         %{tracker: tracker} do
      tracker =
        tracker
        |> Electric.handle_txn_fragment(txn(3, 10), [])
        |> Electric.handle_txn_fragment(txn(5, 10), ["shape1"])

      assert acks() == [3]
      # Half of commit 5 is durable. Electric would acknowledge 4, a position that names no
      # transaction; 3 is what is durable, and it was acknowledged already.
      tracker = Electric.handle_flush_notification(tracker, "shape1", {5, 5})
      assert acks() == []
      Electric.handle_flush_notification(tracker, "shape1", {5, 10})
      assert acks() == [5]
    end

    test "the minimum across shapes, exact", %{tracker: tracker} do
      tracker =
        tracker
        |> Electric.handle_txn_fragment(txn(5, 10), ["shape1", "shape2"])
        |> Electric.handle_txn_fragment(txn(6, 10), ["shape1"])
        |> Electric.handle_txn_fragment(txn(7, 10), ["shape2"])
        # shape2 wrote all of 5 and part of 7; shape1 wrote all of 5 and part of 6.
        |> Electric.handle_flush_notification("shape2", {7, 4})
        |> Electric.handle_flush_notification("shape1", {6, 3})

      assert acks() == [5]
      tracker = Electric.handle_flush_notification(tracker, "shape1", {6, 10})
      assert acks() == [6]
      tracker = Electric.handle_flush_notification(tracker, "shape2", {7, 10})
      assert acks() == [7]
      assert Electric.empty?(tracker)
    end

    test "shapes at the same incomplete position", %{tracker: tracker} do
      tracker =
        tracker
        |> Electric.handle_txn_fragment(txn(5, 10), ["shape1", "shape2"])
        |> Electric.handle_txn_fragment(txn(6, 10), ["shape1", "shape2"])
        |> Electric.handle_flush_notification("shape1", {5, 10})

      assert acks() == [], "shape2 has made nothing durable"
      tracker = Electric.handle_flush_notification(tracker, "shape2", {5, 10})
      # Electric acknowledges 3 and then 4 here; commit 5 is durable in both shapes.
      assert acks() == [5]
      Electric.handle_flush_notification(tracker, "shape1", {6, 3})
      assert acks() == []
    end

    test "commits touching no shape in between", %{tracker: tracker} do
      tracker =
        tracker
        |> Electric.handle_txn_fragment(txn(7, 10), [])
        |> Electric.handle_txn_fragment(txn(10, 10), ["shape1"])
        |> Electric.handle_txn_fragment(txn(11, 10), [])
        |> Electric.handle_txn_fragment(txn(12, 10), ["shape2"])
        |> Electric.handle_flush_notification("shape1", {10, 10})

      # shape2 owes only commit 12: 11 is durable everywhere.
      assert acks() == [7, 11]
      tracker = Electric.handle_flush_notification(tracker, "shape2", {12, 10})
      assert acks() == [12]
      assert Electric.empty?(tracker)
    end

    test "continuous updates: one acknowledgement per step, each a whole commit",
         %{tracker: tracker} do
      tracker
      |> Electric.handle_txn_fragment(txn(10, 10), ["shape1"])
      |> Electric.handle_txn_fragment(txn(11, 10), ["shape2"])
      |> Electric.handle_flush_notification("shape1", {10, 10})
      |> Electric.handle_txn_fragment(txn(12, 10), ["shape1"])
      |> Electric.handle_flush_notification("shape2", {11, 10})
      |> Electric.handle_txn_fragment(txn(13, 10), ["shape2"])
      |> Electric.handle_flush_notification("shape1", {12, 10})

      # Electric: 9, 10, 11 (one behind each time).
      assert acks() == [10, 11, 12]
    end

    test "a flush for an unknown or removed shape is ignored", %{tracker: tracker} do
      tracker =
        tracker
        |> Electric.handle_txn_fragment(txn(1, 10), ["shape1"])
        |> Electric.handle_flush_notification("nobody", {1, 10})

      assert acks() == []
      tracker = Electric.handle_shape_removed(tracker, "shape1")
      assert acks() == [1]
      Electric.handle_flush_notification(tracker, "shape1", {1, 10})
      assert acks() == []
    end

    test "an offset past the commit's last one completes it; one between commits completes those before",
         %{tracker: tracker} do
      tracker =
        tracker
        |> Electric.handle_txn_fragment(txn(4, 10), ["shape1"])
        |> Electric.handle_txn_fragment(txn(9, 10), ["shape1"])
        # tx 6 names no tracked commit: everything before it (commit 4) is durable.
        |> Electric.handle_flush_notification("shape1", {6, 0})

      assert acks() == [4]
      Electric.handle_flush_notification(tracker, "shape1", {9, 99})
      assert acks() == [9]
    end
  end

  describe "shape removal" do
    test "removing the last pending shape acknowledges at once", %{tracker: tracker} do
      tracker = Electric.handle_txn_fragment(tracker, txn(1, 10), ["shape1"])
      tracker = Electric.handle_shape_removed(tracker, "shape1")
      assert acks() == [1]
      assert Electric.empty?(tracker)
    end
  end

  describe "what Electric does not do" do
    test "a stuck shape is evicted and stops holding the position back" do
      parent = self()

      tracker =
        Electric.new(
          notify_fn: &send(parent, {:ack, &1}),
          clock: :mock,
          grace: 1_000,
          challenge: 100
        )

      t = Electric.tracker(tracker)
      ref = t.ref
      :ok = Flushwatch.subscribe(t)

      tracker =
        tracker
        |> Electric.handle_txn_fragment(txn(1, 10), ["stuck", "fine"])
        |> Electric.handle_flush_notification("fine", {1, 10})

      assert acks() == []
      :ok = Flushwatch.advance(t, 1_001)
      tracker = Electric.refresh(tracker)
      :ok = Flushwatch.advance(t, 101)
      tracker = Electric.refresh(tracker)
      assert acks() == [1]
      assert_receive {:flushwatch, ^ref, {:stalled, "stuck", %{evicted: true}}}

      # The next transaction for the handle registers it again.
      tracker = Electric.handle_txn_fragment(tracker, txn(2, 10), ["stuck"])
      assert %{sent: 2, pending: true} = Flushwatch.status(t, "stuck")
      Electric.handle_flush_notification(tracker, "stuck", {2, 10})
      assert acks() == [2]
    end

    test "with scan_every_call: false the owner refreshes on the tracker's messages" do
      parent = self()

      tracker =
        Electric.new(
          notify_fn: &send(parent, {:ack, &1}),
          scan_every_call: false,
          scan_interval: 5
        )

      ref = Flushwatch.ref(Electric.tracker(tracker))
      :ok = Flushwatch.subscribe(Electric.tracker(tracker))

      tracker =
        tracker
        |> Electric.handle_txn_fragment(txn(1, 10), ["shape1"])
        |> Electric.handle_flush_notification("shape1", {1, 10})

      assert acks() == [], "no scan in the calls"
      assert_receive {:flushwatch, ^ref, {:watermark, 1}}, 2_000
      tracker = Electric.refresh(tracker)
      assert acks() == [1]
      assert Electric.empty?(tracker)
    end

    test "a consumer may report straight to its writer, with no message" do
      parent = self()
      tracker = Electric.new(notify_fn: &send(parent, {:ack, &1}), clock: :mock)
      tracker = Electric.handle_txn_fragment(tracker, txn(1, 10), ["shape1"])
      writer = Electric.writer(tracker, "shape1")
      consumer = Task.async(fn -> Flushwatch.flushed(writer, 1) end)
      :ok = Task.await(consumer)
      Electric.refresh(tracker)
      assert acks() == [1]
    end
  end
end
