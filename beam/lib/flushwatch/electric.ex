defmodule Flushwatch.Electric do
  @moduledoc """
  Electric's `FlushTracker` calls over `Flushwatch`, so its call sites port with a rename:

      tracker = Flushwatch.Electric.new(notify_fn: fn lsn -> ack(lsn) end)
      tracker = Flushwatch.Electric.handle_txn_fragment(tracker, fragment, shape_handles)
      tracker = Flushwatch.Electric.handle_flush_notification(tracker, handle, {tx, op})
      tracker = Flushwatch.Electric.handle_shape_removed(tracker, handle)
      Flushwatch.Electric.empty?(tracker)

  Like Electric's, the state is a value threaded through the calls of one process (the
  ShapeLogCollector), and `notify_fn` is called synchronously, inside the call that makes a
  new position acknowledgeable, with that position. Fragments are maps (or structs) with
  `:lsn`, `:last_log_offset` (a `{tx_offset, op_offset}` tuple) and `:commit`; a fragment
  whose `:commit` is `nil` (or absent) is ignored, as in Electric. Flush offsets are
  `{tx_offset, op_offset}` tuples. Shape handles are binaries.

  By default each call does its work and then one `Flushwatch.scan/1` (a dirty NIF), so the
  notification is immediate, as Electric's: tens of microseconds per call on a loaded 2-vCPU
  machine (`scripts/beam-bench`, `electric_*` lines), more than Electric's own map and tree
  update. With `scan_every_call: false` the calls do not scan: the tracker's thread scans
  every `:scan_interval`, and the owner subscribes (`Flushwatch.subscribe(tracker(state))`)
  and calls `refresh/1` when a `{:flushwatch, _, {:watermark, _}}` message arrives. Options
  other than `:notify_fn` and `:scan_every_call` go to `Flushwatch.new/1` (`:grace`,
  `:challenge`, `:start_at`, `:clock`, ...).

  ## Where it differs from Electric, on purpose

    * **Exact acknowledgement, never `tx - 1`.** Electric acknowledges `tx_offset - 1` while
      anything is pending, "just in case": a position that may name no transaction, and one
      transaction behind what is durable. Here `notify_fn` receives only commit positions
      (or `:start_at`) such that every transaction at or before it is durable in every shape
      it touched. A flush offset `{tx, op}` at or past the commit's `last_log_offset` means
      the transaction `tx` is durable for that shape; an offset inside it means every commit
      before `tx` is (the commit tracked before `tx`, remembered from `handle_txn_fragment`).
      On the same input it never acknowledges fewer whole transactions than Electric.
    * **Progress-based stall detection.** A shape that stops making progress (alive but
      stuck: Electric's issue #3983) is challenged after `:grace` and, still silent after
      `:challenge`, evicted: it no longer pins the acknowledged position, and the owner is
      told (`Flushwatch.subscribe(tracker(state))` delivers `{:stalled, handle, _}`). Call
      `refresh/1` on any `{:flushwatch, _, _}` message to have `notify_fn` see the new
      position. A flush notification for an evicted shape is ignored; the next fragment for
      its handle registers it again.
    * **Flushes need not pass through this process.** A consumer may hold its shape's writer
      (`writer/2`) and call `Flushwatch.flushed/2` itself, without a message; the collector
      then learns of it at its next call or `refresh/1`.
  """

  defstruct [
    :tracker,
    :notify_fn,
    :notified,
    scan_every_call: true,
    pending: 0,
    writers: %{},
    commits: nil
  ]

  @type t :: %__MODULE__{}
  @type log_offset :: {non_neg_integer(), non_neg_integer()}

  @doc """
  A tracker. `:notify_fn` (arity 1) receives each new acknowledgeable LSN;
  `:scan_every_call` (true) says whether each call scans (see above); other options go to
  `Flushwatch.new/1`. Raises `ArgumentError` on an invalid option.
  """
  @spec new(keyword()) :: t()
  def new(opts \\ []) do
    {notify_fn, opts} = Keyword.pop(opts, :notify_fn, fn _lsn -> :ok end)
    {scan_every_call, opts} = Keyword.pop(opts, :scan_every_call, true)

    unless is_function(notify_fn, 1),
      do: raise(ArgumentError, "notify_fn must be a function of arity 1")

    unless is_boolean(scan_every_call),
      do: raise(ArgumentError, "scan_every_call must be a boolean")

    case Flushwatch.new(opts) do
      {:ok, t} ->
        %__MODULE__{
          tracker: t,
          notify_fn: notify_fn,
          scan_every_call: scan_every_call,
          notified: Flushwatch.watermark(t),
          commits: :gb_trees.empty()
        }

      {:error, reason} ->
        raise ArgumentError, "invalid flush tracker options: #{inspect(reason)}"
    end
  end

  @doc "The underlying `Flushwatch` tracker (to subscribe, inspect, or hand writers out)."
  @spec tracker(t()) :: Flushwatch.t()
  def tracker(%__MODULE__{tracker: t}), do: t

  @doc "The writer this tracker holds for `handle`, or `nil`."
  @spec writer(t(), binary()) :: Flushwatch.writer() | nil
  def writer(%__MODULE__{writers: w}, handle), do: Map.get(w, handle)

  @doc "Whether no shape has unflushed commits (as of the last scan of this tracker's calls or `refresh/1`)."
  @spec empty?(t()) :: boolean()
  def empty?(%__MODULE__{pending: pending}), do: pending == 0

  @doc """
  Records a transaction fragment and the shapes it affects. Fragments without a commit are
  ignored. Raises `ArgumentError` when the commit does not advance past the last one.
  """
  @spec handle_txn_fragment(t(), map(), Enumerable.t()) :: t()
  def handle_txn_fragment(%__MODULE__{} = state, fragment, shape_handles) do
    case fragment do
      %{commit: commit, last_log_offset: {tx, op}} when commit != nil ->
        track(state, tx, op, shape_handles)

      %{last_log_offset: {_tx, _op}} ->
        state

      other ->
        raise ArgumentError,
              "a fragment needs :last_log_offset as {tx, op}, got: #{inspect(other)}"
    end
  end

  defp track(state, tx, op, shape_handles) do
    {writers, shapes} =
      Enum.reduce(shape_handles, {state.writers, []}, fn handle, {writers, shapes} ->
        w = live_writer(state.tracker, writers, handle)
        {Map.put(writers, handle, w), [w | shapes]}
      end)

    case Flushwatch.track(state.tracker, tx, shapes) do
      {:ok, %{previous: previous}} ->
        commits = :gb_trees.enter(tx, {op, previous}, state.commits)
        after_call(%{state | writers: writers, commits: commits})

      {:error, reason} ->
        raise ArgumentError, "transaction #{tx} not tracked: #{inspect(reason)}"
    end
  end

  # The handle's writer, registered again when its shape ended (evicted, or its key removed).
  defp live_writer(t, writers, handle) do
    case writers do
      %{^handle => w} ->
        if Flushwatch.evicted?(w), do: register!(t, handle), else: w

      _ ->
        register!(t, handle)
    end
  end

  defp register!(t, handle) do
    case Flushwatch.register(t, handle) do
      {:ok, w} -> w
      {:error, reason} -> raise ArgumentError, "shape #{inspect(handle)}: #{inspect(reason)}"
    end
  end

  @doc """
  A shape reports what it has flushed: `{tx, op}`. At or past the transaction's last log
  offset, the transaction is durable for the shape; inside it, every earlier commit is.
  Unknown or removed shapes are ignored.
  """
  @spec handle_flush_notification(t(), binary(), log_offset()) :: t()
  def handle_flush_notification(%__MODULE__{} = state, handle, {tx, op}) do
    case state.writers do
      %{^handle => w} ->
        case durable_through(state, tx, op) do
          nil -> state
          position -> :ok = Flushwatch.flushed(w, position)
        end

        after_call(state)

      _ ->
        state
    end
  end

  # The commit position a flush of `{tx, op}` makes durable, or nil when it names nothing
  # newer than what is already acknowledged.
  defp durable_through(state, tx, op) do
    case :gb_trees.lookup(tx, state.commits) do
      {:value, {last_op, _previous}} when op >= last_op -> tx
      {:value, {_last_op, previous}} -> previous
      :none -> floor_commit(state, tx)
    end
  end

  # `tx` is no tracked commit (acknowledged and pruned, or never tracked): every tracked
  # commit before it is durable.
  defp floor_commit(state, tx) do
    state.commits
    |> :gb_trees.iterator()
    |> floor_walk(tx, nil)
  end

  defp floor_walk(iter, tx, best) do
    case :gb_trees.next(iter) do
      {c, _, next} when c < tx -> floor_walk(next, tx, c)
      _ -> best
    end
  end

  @doc "Ends a shape (Electric removed it): it no longer holds the acknowledged position back."
  @spec handle_shape_removed(t(), binary()) :: t()
  def handle_shape_removed(%__MODULE__{} = state, handle) do
    Flushwatch.remove(state.tracker, handle)
    after_call(%{state | writers: Map.delete(state.writers, handle)})
  end

  defp after_call(%__MODULE__{scan_every_call: true} = state), do: refresh(state)
  defp after_call(state), do: state

  @doc """
  Scans and calls `notify_fn` if the acknowledgeable position moved (after an eviction, or
  flushes reported straight to writers). With `scan_every_call: true` (the default) every
  other call here ends with it.
  """
  @spec refresh(t()) :: t()
  def refresh(%__MODULE__{} = state) do
    %{watermark: watermark, pending: pending} = Flushwatch.scan(state.tracker)
    state = %{state | pending: pending}

    if watermark > state.notified do
      state.notify_fn.(watermark)
      %{state | notified: watermark, commits: prune(state.commits, watermark)}
    else
      state
    end
  end

  # Commits at or below the acknowledged position: no report can move anything there.
  defp prune(commits, watermark) do
    if :gb_trees.is_empty(commits) do
      commits
    else
      case :gb_trees.smallest(commits) do
        {c, _} when c <= watermark -> prune(:gb_trees.delete(c, commits), watermark)
        _ -> commits
      end
    end
  end
end
