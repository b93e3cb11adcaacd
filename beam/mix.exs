defmodule Mix.Tasks.Compile.FlushwatchNif do
  @moduledoc """
  Builds the NIF crate in `native/` with cargo (release) and copies the library into
  `priv/`, where `Flushwatch.Native` loads it. Cargo's target directory is
  `$CARGO_TARGET_DIR` when set, else `_build/cargo`. No Hex package is involved.
  """
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    root = Path.dirname(__ENV__.file)
    target = System.get_env("CARGO_TARGET_DIR") || Path.join(root, "_build/cargo")
    manifest = Path.join(root, "native/Cargo.toml")
    args = ["build", "--release", "--manifest-path", manifest]

    case System.cmd("cargo", args,
           env: [{"CARGO_TARGET_DIR", target}],
           stderr_to_stdout: true,
           into: IO.stream(:stdio, :line)
         ) do
      {_, 0} -> copy(target, root)
      {_, status} -> Mix.raise("cargo build of the flushwatch NIF failed (exit status #{status})")
    end
  end

  defp copy(target, root) do
    built =
      Enum.find(
        ["libflushwatch_nif.so", "libflushwatch_nif.dylib"],
        &File.exists?(Path.join([target, "release", &1]))
      ) || Mix.raise("cargo built no libflushwatch_nif library in #{target}/release")

    priv = Path.join(root, "priv")
    File.mkdir_p!(priv)
    dest = Path.join(priv, "libflushwatch_nif.so")
    src = Path.join([target, "release", built])

    if File.exists?(dest) and File.read!(dest) == File.read!(src) do
      {:noop, []}
    else
      File.cp!(src, dest)
      {:ok, []}
    end
  end
end

defmodule Flushwatch.MixProject do
  use Mix.Project

  def project do
    [
      app: :flushwatch,
      version: "0.1.0",
      elixir: "~> 1.14",
      compilers: [:flushwatch_nif] ++ Mix.compilers(),
      start_permanent: Mix.env() == :prod,
      deps: []
    ]
  end

  def application do
    [extra_applications: []]
  end
end
