# The generation exporter as a package: bash with coreutils on its PATH; writeShellApplication
# runs shellcheck on it at build time. Used by the monitoring module and the flake's checks.
{ writeShellApplication, coreutils }:
writeShellApplication {
  name = "nixos-generation-exporter";
  runtimeInputs = [ coreutils ];
  text = builtins.readFile ./generation-exporter.sh;
}
