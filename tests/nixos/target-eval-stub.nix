# The NixOS options test/fleet/nodes/target.nix and the variants set, on top of
# tests/flake/module-eval.nix's stub, so the node module and every variant evaluate with nixpkgs'
# lib alone (test_nixos_target_module.py). Declared loosely: the point is the module logic
# (extendModules, overrides, preloaded paths), not NixOS itself.
{ lib, fakeNixpkgs }:
let
  inherit (lib) mkOption types;
  option = type: default: mkOption { inherit type default; };
  fakeDerivation = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-${name}";
  };
in
{
  # Every NixOS test node imports qemu-vm.nix (nixos-test-base.nix); its stand-in declares what
  # the nodes set under virtualisation.
  imports = [ ../flake/nixos-stubs/virtualisation/qemu-vm.nix ];

  options = {
    system.switch.enable = option types.bool false;
    environment.etc = mkOption {
      type = types.attrsOf (types.submodule {
        options.text = mkOption { type = types.nullOr types.lines; default = null; };
        options.source = mkOption { type = types.nullOr types.str; default = null; };
      });
      default = { };
    };
    environment.systemPackages = option (types.listOf types.raw) [ ];
    networking.firewall.enable = option types.bool true;
    boot.initrd.kernelModules = option (types.listOf types.str) [ ];
  };
  config._module.args.pkgs = lib.mkForce {
    path = fakeNixpkgs;
    bashInteractive = fakeDerivation "bash-interactive-5.2";
    coreutils = fakeDerivation "coreutils-9.5";
    nix = fakeDerivation "nix-2.28";
    hello = fakeDerivation "hello-2.12";
    shadow = fakeDerivation "shadow-4.16";
    callPackage = file: args:
      fakeDerivation "called-${baseNameOf (toString file)}${lib.optionalString (args ? label) "-${args.label}"}";
    curl = fakeDerivation "curl-8.0";
    writeShellScript = name: text: fakeDerivation name;
    writeText = name: text: fakeDerivation name // { inherit text; };
  };
}
