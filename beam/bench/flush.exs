# One flush from a consumer process: through the NIF (`Flushwatch.flushed/2` on the
# consumer's own writer) next to the same report through a tracker process (a GenServer
# holding a map of {last_sent, last_flushed} per shape and a :gb_trees of flushed offsets,
# as Electric's FlushTracker inside its ShapeLogCollector), with 1 and with 1,000 concurrent
# consumer processes. Cost per flush = wall time until every flush is applied / flushes.
# Each figure is the median of 5 repetitions. Run by scripts/beam-bench.

defmodule Bench.Collector do
  @moduledoc false
  use GenServer

  def start(shapes, sent), do: GenServer.start(__MODULE__, {shapes, sent})

  @impl true
  def init({shapes, sent}) do
    # Every shape pending at {0, 0}, sent up to `sent`: Electric's state mid-stream.
    last = Map.new(shapes, &{&1, {sent, {0, 0}}})
    tree = :gb_trees.insert({0, 0}, MapSet.new(shapes), :gb_trees.empty())
    {:ok, %{last: last, tree: tree, global: {0, 0}}}
  end

  @impl true
  def handle_cast({:flushed, shape, offset}, %{last: last, tree: tree} = s) do
    s =
      case last do
        %{^shape => {^offset, prev}} ->
          %{s | last: Map.delete(last, shape), tree: tree_delete(tree, prev, shape)}

        %{^shape => {sent, prev}} ->
          tree = tree |> tree_delete(prev, shape) |> tree_add(offset, shape)
          %{s | last: Map.put(last, shape, {sent, offset}), tree: tree}

        _ ->
          s
      end

    {:noreply, update_global(s)}
  end

  @impl true
  def handle_call(:sync, _from, s), do: {:reply, s.global, s}

  defp update_global(%{tree: tree, global: global} = s) do
    if :gb_trees.is_empty(tree) do
      s
    else
      {min, _} = :gb_trees.smallest(tree)
      %{s | global: max(global, min)}
    end
  end

  defp tree_delete(tree, offset, shape) do
    set = MapSet.delete(:gb_trees.get(offset, tree), shape)

    if MapSet.size(set) == 0,
      do: :gb_trees.delete(offset, tree),
      else: :gb_trees.update(offset, set, tree)
  end

  defp tree_add(tree, offset, shape) do
    case :gb_trees.lookup(offset, tree) do
      :none -> :gb_trees.insert(offset, MapSet.new([shape]), tree)
      {:value, set} -> :gb_trees.update(offset, MapSet.put(set, shape), tree)
    end
  end
end

defmodule Bench do
  @moduledoc false
  @total 200_000
  @reps 5
  # Far above every flush: each report is progress, never caught up.
  @sent 0x100_0000_0000

  def run do
    nif1 = median(fn -> nif(1) end)
    gen1 = median(fn -> genserver(1) end)
    nif1000 = median(fn -> nif(1000) end)
    gen1000 = median(fn -> genserver(1000) end)

    IO.puts(
      "schedulers: #{System.schedulers_online()}, flushes per run: #{@total}, " <>
        "median of #{@reps} runs"
    )

    IO.puts("RESULT nif_flushed_ns=#{fmt(nif1)}")
    IO.puts("RESULT genserver_flushed_ns=#{fmt(gen1)}")
    IO.puts("RESULT nif_flushed_ns_1000_procs=#{fmt(nif1000)}")
    IO.puts("RESULT genserver_flushed_ns_1000_procs=#{fmt(gen1000)}")
    IO.puts("RESULT speedup_1000_procs=#{fmt(gen1000 / nif1000)}")
    costs()
  end

  # What the other plain NIFs cost, and the writer's lock (median of 5 each).
  defp costs do
    {:ok, t} = Flushwatch.new(clock: :mock)
    {:ok, w} = Flushwatch.register(t, "a")
    {:ok, _} = Flushwatch.track(t, @sent, [w])
    n = 100_000
    defer = median(fn -> per_call(n, fn -> Flushwatch.defer(w) end) end)
    IO.puts("RESULT nif_defer_ns=#{fmt(defer)}")

    {locked, unlocked} =
      Enum.at(
        Enum.sort(for i <- 0..4, do: Flushwatch.Native.debug_lock_cost(w, 1 + i * 2 * n, n)),
        2
      )

    IO.puts(
      "RESULT writer_lock_ns=#{fmt(locked - unlocked)} (flushed in Rust: #{fmt(unlocked)} ns unlocked, #{fmt(locked)} ns locked)"
    )

    writers = for i <- 1..256, do: elem(Flushwatch.register(t, "s#{i}"), 1)
    c = :atomics.new(1, [])
    :atomics.put(c, 1, @sent)
    next = fn -> :atomics.add_get(c, 1, 1) end
    track1 = median(fn -> per_call(10_000, fn -> Flushwatch.track(t, next.(), [w]) end) end)
    track256 = median(fn -> per_call(1_000, fn -> Flushwatch.track(t, next.(), writers) end) end)
    IO.puts("RESULT nif_track_1_ns=#{fmt(track1)}")
    IO.puts("RESULT nif_track_256_ns=#{fmt(track256)} (the largest plain-NIF track)")

    scan = fn -> median(fn -> per_call(1_000, fn -> Flushwatch.scan(t) end) end) end
    IO.puts("RESULT nif_scan_257_shapes_ns=#{fmt(scan.())} (plain NIF, 257 pending)")
    more = for i <- 257..1023, do: elem(Flushwatch.register(t, "s#{i}"), 1)
    {:ok, _} = Flushwatch.track(t, next.(), more ++ writers ++ [w])
    IO.puts("RESULT nif_scan_1024_shapes_ns=#{fmt(scan.())} (plain NIF, 1,024 pending)")
    one_more = elem(Flushwatch.register(t, "s1024"), 1)
    IO.puts("RESULT nif_scan_1025_shapes_ns=#{fmt(scan.())} (dirty, 1,024 pending)")
    true = length(more) == 767 and not Flushwatch.evicted?(one_more)
    true = Flushwatch.evicted?(w) == false and length(writers) == 256
    electric(true)
    electric(false)
  end

  # The Electric adapter's flush notification, from its owner, 1,000 shapes pending; with a
  # scan in every call (the default), and without (the tracker's thread scans).
  defp electric(scan_every_call) do
    e = Flushwatch.Electric.new(scan_every_call: scan_every_call)
    handles = List.to_tuple(for i <- 1..1000, do: "s#{i}")
    fragment = fn tx -> %{lsn: tx, last_log_offset: {tx, 10}, commit: %{}} end
    e = Flushwatch.Electric.handle_txn_fragment(e, fragment.(1), Tuple.to_list(handles))
    e = Flushwatch.Electric.handle_txn_fragment(e, fragment.(@sent), Tuple.to_list(handles))
    n = 5_000

    ns =
      median(fn ->
        per_call(n, fn ->
          i = :rand.uniform(1000) - 1
          Flushwatch.Electric.handle_flush_notification(e, elem(handles, i), {1, 10})
        end)
      end)

    IO.puts(
      "RESULT electric_flush_notification_ns=#{fmt(ns)} (scan_every_call: #{scan_every_call})"
    )
  end

  defp per_call(n, fun) do
    t0 = System.monotonic_time(:nanosecond)
    Enum.each(1..n, fn _ -> fun.() end)
    (System.monotonic_time(:nanosecond) - t0) / n
  end

  defp fmt(x), do: :erlang.float_to_binary(x / 1, decimals: 1)

  defp median(fun) do
    runs = Enum.sort(for _ <- 1..@reps, do: fun.())
    Enum.at(runs, div(@reps, 2))
  end

  # ns per flush, through the NIF: every consumer flushes its own writer.
  defp nif(procs) do
    {:ok, t} = Flushwatch.new(scan_interval: 100)
    writers = for i <- 1..procs, do: elem(Flushwatch.register(t, "shape-#{i}"), 1)
    {:ok, _} = Flushwatch.track(t, @sent, writers)
    per = div(@total, procs)

    ns =
      race(writers, fn w ->
        nif_loop(w, 1, per)
      end)

    # Every report landed (and the writers stay alive to here).
    Enum.each(writers, &landed!(t, &1, per))
    ns / (per * procs)
  end

  defp landed!(t, w, per) do
    case Flushwatch.status(t, Flushwatch.key(w)) do
      %{flushed: ^per} -> :ok
      other -> raise "flushes lost: #{inspect(other)}, evicted: #{Flushwatch.evicted?(w)}"
    end
  end

  defp nif_loop(_w, i, n) when i > n, do: :ok

  defp nif_loop(w, i, n) do
    Flushwatch.flushed(w, i)
    nif_loop(w, i + 1, n)
  end

  # ns per flush, through a tracker process: every consumer casts its report; the clock
  # stops when the tracker has applied them all.
  defp genserver(procs) do
    shapes = for i <- 1..procs, do: "shape-#{i}"
    {:ok, server} = Bench.Collector.start(shapes, {@sent, 0})
    per = div(@total, procs)

    ns =
      race(shapes, fn shape -> cast_loop(server, shape, 1, per) end, fn ->
        GenServer.call(server, :sync, :infinity)
      end)

    {^per, 0} = GenServer.call(server, :sync)
    GenServer.stop(server)
    ns / (per * procs)
  end

  defp cast_loop(_server, _shape, i, n) when i > n, do: :ok

  defp cast_loop(server, shape, i, n) do
    GenServer.cast(server, {:flushed, shape, {i, 0}})
    cast_loop(server, shape, i + 1, n)
  end

  # One process per item, started and waiting; then go. Wall time (ns) until all are done
  # and `finish` returns.
  defp race(items, work, finish \\ fn -> :ok end) do
    parent = self()

    pids =
      for item <- items do
        spawn_link(fn ->
          receive do
            :go -> :ok
          end

          work.(item)
          send(parent, {:done, self()})
        end)
      end

    t0 = System.monotonic_time(:nanosecond)
    Enum.each(pids, &send(&1, :go))
    Enum.each(pids, fn pid -> receive do: ({:done, ^pid} -> :ok) end)
    finish.()
    System.monotonic_time(:nanosecond) - t0
  end
end

Bench.run()
