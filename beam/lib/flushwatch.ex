defmodule Flushwatch do
  @moduledoc """
  Flush tracking for change-data-capture pipelines, from Elixir: a safe acknowledgement
  watermark, and detection of consumers that are alive but stuck.

  A thin layer over the Rust crate `flushwatch` (a NIF). The producer (the process reading
  the replication stream) `register/2`s a shape per consumer and `track/3`s every commit with
  the shapes it touches; each consumer process holds its shape's **writer** and reports what
  is durable with `flushed/2`, a plain NIF call (no message, no central process). A thread
  owned by the tracker scans on `:scan_interval`, publishes the watermark the pipeline may
  acknowledge to Postgres, and challenges, then evicts, shapes that stop making progress.

      {:ok, t} = Flushwatch.new(grace: 30_000, challenge: 5_000)
      :ok = Flushwatch.subscribe(t)
      {:ok, writer} = Flushwatch.register(t, "shape-handle-1")   # hand it to the consumer
      {:ok, %{previous: prev}} = Flushwatch.track(t, 0x1A0, ["shape-handle-1"])
      # in the consumer, after fsync:
      :ok = Flushwatch.flushed(writer, 0x1A0)
      # in the producer: {:flushwatch, ref, {:watermark, 0x1A0}} arrives, ref == t.ref

  ## Positions

  Offsets are non-negative integers below 2^64: a transaction is named by its commit
  position (for Postgres, the commit's end LSN); commits passed to `track/3` strictly
  increase. A consumer reports only commit positions it received, or the `:previous` that
  `track/3` returned for a commit it has only partly written (never `commit - 1`: positions
  are sparse). The watermark is always `:start_at` or a tracked commit.

  ## Writers and lifetimes

  A writer is a resource owned by the consumer process that holds it. When that process
  exits, the writer is collected and its shape ends: quietly when it was caught up, with a
  `{:writer_down, key, :dropped_pending}` event when it had unflushed commits. No process
  monitor is involved. `retire/1` ends a shape quietly even when pending; `remove/2` ends it
  from the producer's side. The key is free to register again at once. A tracker that is
  collected stops its thread.

  ## Stall detection

  A pending shape whose last progress (it became pending, its flushed position moved, or it
  called `defer/1`) is more than `:grace` old is **suspected** (`suspected?/1` turns true, so a
  healthy consumer that is legitimately slow can answer with `defer/1`); if it stays silent for
  more than a further `:challenge`, it is **stalled**: with `stall_policy: :evict` it stops
  counting (the watermark moves past it), its writer becomes inert (`evicted?/1`) and its key
  is free; with `:report` only the event is sent (and the detector re-arms). With the
  background scanner, a wedged consumer is stalled no later than
  `grace + challenge + 2 * scan_interval + r` (plus one scan's duration) after its last
  progress (or the tracker's start, if later), where `r <= scan_interval` is the tick
  resolution.

  ## Events

  `subscribe/2` sends every event to the subscribed processes as
  `{:flushwatch, ref, event}`, where `ref` is `ref(t)` (`t.ref`, a reference made by
  `new/1`; the message cannot carry the tracker itself, or the tracker could never be
  collected):

  | event | meaning |
  | --- | --- |
  | `{:watermark, offset}` | the published watermark rose (a slow subscriber may see only the latest value) |
  | `{:suspected, key, idle_ms}` | challenged (informational) |
  | `{:stalled, key, %{idle_ms:, flushed:, sent:, evicted:}}` | stalled: rebuild the shape (an action event) |
  | `{:writer_down, key, :dropped_pending \\| :panicked}` | the writer went away while pending: rebuild (an action event) |
  | `{:lagging, key, lag}` | progressing but falling behind (informational) |
  | `{:scan_panicked, message}` | a scan failed; detection impaired (informational) |

  Messages leave after each scan (the thread's, or a `scan/1` call), and at the latest every
  `:scan_interval` (a `:writer_down` needs no scan). The events form one queue. While no
  process is subscribed they stay queued (up to
  `:event_capacity` informational events; action events are never dropped) and
  `events/1` takes them; once a process subscribes the tracker's thread delivers them. An
  event is delivered to every subscriber alive at the time.

  ## Errors

  Bad input never crashes the VM (a panic inside the NIF is raised as an `ErlangError`) and
  loses nothing:

  | input | outcome |
  | --- | --- |
  | `track/3` with a commit `<= last_seen/1` | `{:error, {:offset_regression, last_seen, commit}}`, nothing changed |
  | `track/3` with commit 0 | `{:error, :zero_commit}`, nothing changed |
  | `track/3` naming a shape that is gone, an unknown key, or another tracker's id | counted in `:skipped` |
  | `register/2` of a registered key | `{:error, :duplicate_shape}`, the shape untouched |
  | `flushed/2` below the shape's flushed position | ignored |
  | `flushed/2` beyond what was sent | counts as caught up to what was sent, never more |
  | reports from an evicted, removed or retired writer | ignored |
  | `new/1` with `scan_interval: 0` or `event_capacity: 0` | `{:error, {:invalid_config, :zero_scan_interval \\| :zero_event_capacity}}` |
  | a key that is not a binary, an offset that is negative or not below 2^64, a bad option | `ArgumentError` |

  ## Scheduling

  Nothing here blocks a scheduler: `flushed/2`, `defer/1`, `register/2`, `remove/2`,
  `track/3` with up to 256 shapes and `scan/1` with up to 1,024 shapes registered are plain
  NIFs doing bounded work; larger `track/3` and `scan/1` calls run on dirty CPU schedulers. See `beam/README.md` for measured costs.
  """

  alias Flushwatch.Native

  @enforce_keys [:ref, :resource]
  defstruct [:ref, :resource]

  @typedoc "A tracker. `ref` tags its messages."
  @type t :: %__MODULE__{ref: reference(), resource: reference()}
  @typedoc "A consumer's end of one shape (a NIF resource)."
  @type writer :: reference()
  @typedoc "A shape's id (a NIF resource), for producers that hold no writer."
  @type id :: reference()
  @typedoc "A log position: an integer in `0..2^64-1`."
  @type offset :: non_neg_integer()
  @type key :: binary()

  # `track/3` with more shapes than this runs on a dirty scheduler.
  @small_track 256

  @defaults [
    grace: 60_000,
    challenge: 5_000,
    scan_interval: 100,
    start_at: 0,
    stall_policy: :evict,
    event_capacity: 4096,
    lag_window: 50,
    clock: :system,
    scan: true
  ]
  @max_u64 0xFFFF_FFFF_FFFF_FFFF

  @doc """
  Makes a tracker and starts its thread.

  Options (durations in milliseconds):

    * `:grace` (60_000) - a pending shape idle for longer is suspected
    * `:challenge` (5_000) - how long a suspected shape has to answer before it stalls
    * `:scan_interval` (100) - the scanner's period; also the tick resolution
    * `:start_at` (0) - the initial last seen position and watermark
    * `:stall_policy` (`:evict`) - `:evict` or `:report`
    * `:event_capacity` (4096) - queued events at which informational ones are dropped
    * `:lag_window` (50) - scans in the lagging classifier's window; 0 turns it off
    * `:clock` (`:system`) - `:mock` for tests: time moves only with `advance/2`, and the
      thread does not scan by itself (call `scan/1`); it still delivers events
    * `:scan` (true) - whether the thread scans every `:scan_interval` (real clock only)

  Returns `{:ok, t}`, or `{:error, {:invalid_config, reason}}`. Unknown options and values
  of the wrong type raise `ArgumentError`.

      iex> {:ok, t} = Flushwatch.new(start_at: 100)
      iex> Flushwatch.watermark(t)
      100
  """
  @spec new(keyword()) :: {:ok, t()} | {:error, term()}
  def new(opts \\ []) do
    opts = Keyword.validate!(opts, @defaults)
    ms = fn name -> integer!(opts, name, 0, @max_u64) end

    policy =
      case opts[:stall_policy] do
        p when p in [:evict, :report] -> p
        p -> raise ArgumentError, "stall_policy must be :evict or :report, got: #{inspect(p)}"
      end

    mock =
      case opts[:clock] do
        :mock -> true
        :system -> false
        c -> raise ArgumentError, "clock must be :system or :mock, got: #{inspect(c)}"
      end

    scan =
      case opts[:scan] do
        b when is_boolean(b) -> b
        b -> raise ArgumentError, "scan must be a boolean, got: #{inspect(b)}"
      end

    ref = make_ref()

    case Native.new(
           :erlang.term_to_binary(ref),
           ms.(:grace),
           ms.(:challenge),
           ms.(:scan_interval),
           integer!(opts, :start_at, 0, @max_u64),
           policy,
           integer!(opts, :event_capacity, 0, @max_u64),
           integer!(opts, :lag_window, 0, 0xFFFF_FFFF),
           mock,
           scan
         ) do
      {:ok, resource} -> {:ok, %__MODULE__{ref: ref, resource: resource}}
      {:error, _} = error -> error
    end
  end

  @doc """
  `new/1`, raising `ArgumentError` on an invalid configuration.

      iex> t = Flushwatch.new!(clock: :mock)
      iex> Flushwatch.last_seen(t)
      0
  """
  @spec new!(keyword()) :: t()
  def new!(opts \\ []) do
    case new(opts) do
      {:ok, t} -> t
      {:error, reason} -> raise ArgumentError, "invalid tracker options: #{inspect(reason)}"
    end
  end

  @doc "The reference that tags this tracker's messages: `{:flushwatch, ref, event}`."
  @spec ref(t()) :: reference()
  def ref(%__MODULE__{ref: ref}), do: ref

  defp integer!(opts, name, min, max) do
    case opts[name] do
      n when is_integer(n) and n >= min and n <= max ->
        n

      n ->
        raise ArgumentError,
              "#{name} must be an integer in #{min}..#{max}, got: #{inspect(n)}"
    end
  end

  defp res(%__MODULE__{resource: r}), do: r

  defp res(other),
    do: raise(ArgumentError, "expected a Flushwatch tracker, got: #{inspect(other)}")

  defp key!(key) when is_binary(key), do: key
  defp key!(key), do: raise(ArgumentError, "shape keys are binaries, got: #{inspect(key)}")

  @doc """
  Registers a shape under `key` (a binary: Electric's shape handle) and returns its writer,
  to be held by the consumer process.

      iex> {:ok, t} = Flushwatch.new()
      iex> {:ok, _writer} = Flushwatch.register(t, "orders")
      iex> Flushwatch.register(t, "orders")
      {:error, :duplicate_shape}
  """
  @spec register(t(), key()) :: {:ok, writer()} | {:error, :duplicate_shape}
  def register(t, key), do: Native.register(res(t), key!(key))

  @doc """
  Records that the transaction with commit position `commit` touches `shapes`: a list of
  writers, ids (`id/1`, `id_of/2`) or keys, mixed freely. An empty list records a commit (or
  a keepalive) that touches no shape: it advances `last_seen/1`, so an idle source still lets
  the watermark move.

  Returns `{:ok, %{tracked: n, skipped: n, previous: offset}}`: `:previous` is the commit
  tracked just before this one (or `:start_at`), what a consumer that has written only part
  of this commit reports. Shapes that are gone and unknown keys are skipped, each counted
  once. Up to #{@small_track} shapes run as a plain NIF, larger lists on a dirty scheduler.

      iex> {:ok, t} = Flushwatch.new()
      iex> {:ok, w} = Flushwatch.register(t, "orders")
      iex> Flushwatch.track(t, 10, [w, "nobody"])
      {:ok, %{tracked: 1, skipped: 1, previous: 0}}
      iex> Flushwatch.track(t, 10, [])
      {:error, {:offset_regression, 10, 10}}
  """
  @spec track(t(), offset(), [writer() | id() | key()]) ::
          {:ok, %{tracked: non_neg_integer(), skipped: non_neg_integer(), previous: offset()}}
          | {:error, term()}
  def track(t, commit, shapes) when is_list(shapes) do
    case size_class(shapes, @small_track) do
      :small -> Native.track(res(t), commit, shapes)
      :large -> Native.track_dirty(res(t), commit, shapes)
    end
  end

  def track(_t, _commit, shapes),
    do: raise(ArgumentError, "shapes must be a list, got: #{inspect(shapes)}")

  # Walks at most `n + 1` cells: whether the list is short enough for a plain NIF.
  defp size_class([], _), do: :small
  defp size_class(_, 0), do: :large
  defp size_class([_ | rest], n), do: size_class(rest, n - 1)

  defp size_class(tail, _),
    do: raise(ArgumentError, "shapes must be a proper list, its tail is: #{inspect(tail)}")

  @doc """
  Reports that every transaction with commit position `<= position` tracked for this shape
  is durable. The hot path: a plain NIF, no message, no lock shared with other consumers.
  Report only commits received, or the `:previous` of a commit written in part.
  """
  @spec flushed(writer(), offset()) :: :ok
  def flushed(writer, position), do: Native.flushed(writer, position)

  @doc "Tells the tracker the consumer is alive and busy: counts as progress, answers a challenge."
  @spec defer(writer()) :: :ok
  def defer(writer), do: Native.defer(writer)

  @doc "Whether the shape is challenged and has not answered (answer with progress or `defer/1`)."
  @spec suspected?(writer()) :: boolean()
  def suspected?(writer), do: Native.suspected(writer)

  @doc "Whether the shape ended under this writer: evicted, removed or retired (its reports are ignored)."
  @spec evicted?(writer()) :: boolean()
  def evicted?(writer), do: Native.evicted(writer)

  @doc "Ends the shape quietly, even when pending (no `:writer_down` event)."
  @spec retire(writer()) :: :ok
  def retire(writer), do: Native.retire(writer)

  @doc "The writer's key."
  @spec key(writer()) :: key()
  def key(writer), do: Native.writer_key(writer)

  @doc "The writer's shape id, for `track/3`."
  @spec id(writer()) :: id()
  def id(writer), do: Native.writer_id(writer)

  @doc "The id of the shape registered under `key`, or `nil`."
  @spec id_of(t(), key()) :: id() | nil
  def id_of(t, key), do: Native.id_of(res(t), key!(key))

  @doc "Ends the shape registered under `key` (its writer goes inert); whether it was registered."
  @spec remove(t(), key()) :: boolean()
  def remove(t, key), do: Native.remove(res(t), key!(key))

  @doc "The published watermark (as of the last scan): the position the pipeline may acknowledge."
  @spec watermark(t()) :: offset()
  def watermark(t), do: Native.watermark(res(t))

  @doc "The highest commit tracked (or `:start_at`)."
  @spec last_seen(t()) :: offset()
  def last_seen(t), do: Native.last_seen(res(t))

  @doc """
  A shape's state, or `nil`: `%{key:, sent:, flushed:, pending:, idle_ms:, suspected:, lag:}`
  (`lag` is `last_seen - flushed` in positions; `idle_ms` is zero when not pending).
  """
  @spec status(t(), key()) :: map() | nil
  def status(t, key), do: Native.status(res(t), key!(key))

  @doc "As of the last scan, the status of the pending shape holding the watermark, or `nil`."
  @spec pinned_by(t()) :: map() | nil
  def pinned_by(t), do: Native.pinned_by(res(t))

  @doc """
  Counters: `%{registered:, pending:, suspected:, stalled:, evicted:, writers_down:,
  events_dropped:, scans:, scan_panics:, last_scan_us:, last_seen:, watermark:}`.
  """
  @spec stats(t()) :: map()
  def stats(t), do: Native.stats(res(t))

  @doc """
  One scan now: publishes the watermark, suspects and stalls. With at most 1,024 shapes
  registered it runs as a plain NIF (its work is bounded by the shapes), else on a dirty
  scheduler. Returns
  `%{watermark:, last_seen:, pending:, registered:, suspected: [key], stalled: [key],
  lagging: [key], pinned_by: key | nil}` (the keys newly suspected, stalled, lagging in this
  scan). Its events reach subscribers through the tracker's thread.
  """
  @spec scan(t()) :: map()
  def scan(t) do
    r = res(t)

    case Native.scan_small(r) do
      :large -> Native.scan(r)
      report -> report
    end
  end

  @doc "Sends the tracker's events and watermark changes to `pid` (see \"Events\")."
  @spec subscribe(t(), pid()) :: :ok
  def subscribe(t, pid \\ self()), do: Native.subscribe(res(t), pid)

  @doc "Stops sending to `pid`."
  @spec unsubscribe(t(), pid()) :: :ok
  def unsubscribe(t, pid \\ self()), do: Native.unsubscribe(res(t), pid)

  @doc "Takes the queued events, oldest first (for callers that do not subscribe)."
  @spec events(t()) :: [tuple()]
  def events(t), do: Native.take_events(res(t))

  @doc "Moves a mock clock (`clock: :mock`) forward by `ms` milliseconds."
  @spec advance(t(), non_neg_integer()) :: :ok
  def advance(t, ms) do
    case Native.advance(res(t), ms) do
      :ok ->
        :ok

      {:error, :no_mock_clock} ->
        raise ArgumentError, "advance/2 needs a tracker made with clock: :mock"
    end
  end
end
