ExUnit.start()

defmodule Flushwatch.TestHelpers do
  @moduledoc false

  @doc "Polls `fun` until it returns a truthy value or `timeout_ms` passes; returns the value."
  def eventually(fun, timeout_ms \\ 2_000) do
    deadline = System.monotonic_time(:millisecond) + timeout_ms
    poll(fun, deadline)
  end

  defp poll(fun, deadline) do
    case fun.() do
      result when result not in [nil, false] ->
        result

      _ ->
        if System.monotonic_time(:millisecond) > deadline do
          raise ExUnit.AssertionError, message: "condition not met in time"
        end

        Process.sleep(2)
        poll(fun, deadline)
    end
  end

  @doc "A tracker on a mock clock (no background scans)."
  def mock_tracker(opts \\ []) do
    {:ok, t} = Flushwatch.new(Keyword.merge([clock: :mock, scan_interval: 10], opts))
    t
  end
end
