defmodule Flushwatch.Native do
  @moduledoc false
  # The NIF functions (native/src). Every stub is replaced when the library loads; calling
  # one before that raises. Use `Flushwatch`, which validates arguments first.

  @on_load :load

  def load do
    path = :filename.join(:code.priv_dir(:flushwatch), ~c"libflushwatch_nif")
    :erlang.load_nif(path, 0)
  end

  defp nif, do: :erlang.nif_error(:nif_not_loaded)

  def new(_tag, _grace, _challenge, _interval, _start_at, _policy, _cap, _lag, _mock, _scan),
    do: nif()

  def register(_t, _key), do: nif()
  def id_of(_t, _key), do: nif()
  def track(_t, _commit, _shapes), do: nif()
  def track_dirty(_t, _commit, _shapes), do: nif()
  def remove(_t, _key), do: nif()
  def watermark(_t), do: nif()
  def last_seen(_t), do: nif()
  def status(_t, _key), do: nif()
  def pinned_by(_t), do: nif()
  def stats(_t), do: nif()
  def scan(_t), do: nif()
  def scan_small(_t), do: nif()
  def subscribe(_t, _pid), do: nif()
  def unsubscribe(_t, _pid), do: nif()
  def take_events(_t), do: nif()
  def advance(_t, _ms), do: nif()
  def probe(_t), do: nif()
  def probe_running(_probe), do: nif()
  def flushed(_w, _position), do: nif()
  def defer(_w), do: nif()
  def suspected(_w), do: nif()
  def evicted(_w), do: nif()
  def retire(_w), do: nif()
  def writer_key(_w), do: nif()
  def writer_id(_w), do: nif()
  def debug_panic, do: nif()
  def debug_lock_cost(_w, _from, _n), do: nif()
end
