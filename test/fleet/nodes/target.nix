# `target` and `target2`: a fleet host as the homelab modules make it (deploy user, fleet cache
# client, monitoring), booted the way hardware boots (UEFI, systemd-boot, the store on its own
# disk), so that reboots, `deploy --boot` and boot defaults mean what they mean on a real host
# (docs/nixos-facts.md, "Booting a test VM").
#
# The variants the scenarios deploy (../variants) are this very node extended with one module
# each (extendModules), exposed as `homelabTest.variants.<name>` for ../outputs.nix. Their
# closures, except cache-pull's, are preloaded into this node's store: deploys then copy only
# deploy-rs's small activation wrapper, and the root file system (sized to its contents by
# nixpkgs' make-disk-image) never fills up.
{ config, lib, pkgs, extendModules, ... }:
let
  # Facts the harness's scenarios read too (one source): ../facts.json.
  facts = builtins.fromJSON (builtins.readFile ../facts.json);
  keys = import ../keys;
  snakeOil = import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;
  variantModules = import ../variants;
in
{
  imports = [ ../../../modules ];

  options.homelabTest.variants = lib.mkOption {
    type = lib.types.lazyAttrsOf lib.types.raw;
    readOnly = true;
    internal = true;
    description = ''
      This node extended with each module of test/fleet/variants: full NixOS evaluations
      (`config`, `options`, `extendModules`) that lib/deploy-nodes.nix and deploy-rs's
      activate.nixos accept like any nixosSystem.
    '';
  };

  config = {
    homelabTest.variants =
      lib.mapAttrs (_: module: extendModules { modules = [ module ]; }) variantModules;

    # Test VMs default to false; deploy-rs activates through switch-to-configuration.
    system.switch.enable = true;

    virtualisation = {
      useBootLoader = true;
      useEFIBoot = true;
      # The store lives in the disk image and survives reboots; no 9p share (the default test
      # VM's host store and xchg/shared directories): QEMU refuses snapshots with 9p mounted.
      # The UEFI variable store is attached as qcow2 (./snapshottable.nix), so targets snapshot.
      mountHostNixStore = false;
      sharedDirectories = lib.mkForce { };
      memorySize = 1536;
      # Explicit: the default changed between releases (1024 MiB, then "auto" where supported).
      # The overlay on nixpkgs' disk image; its root file system is sized to the preloaded
      # closures by make-disk-image.
      diskSize = 8192;
      additionalPaths = map (variant: variant.config.system.build.toplevel)
        (lib.attrValues (removeAttrs config.homelabTest.variants [ "cache-pull" ]));
    };
    boot.loader.systemd-boot.enable = true;
    boot.loader.efi.canTouchEfiVariables = true;

    services.openssh.enable = true;

    homelab.users.deploy = {
      enable = true;
      authorizedKeys = [ snakeOil.snakeOilPublicKey ];
    };
    homelab.deploy = {
      # Fresh host keys on every cold boot; never a ControlMaster (it would hide a broken sshd).
      sshOpts = facts.sshOptions;
      # A failed deploy leaves deploy-rs's `wait` ssh running this long (docs/deploy-rs-facts.md).
      activationTimeout = 120;
    };
    homelab.nixCache = {
      enable = true;
      url = facts.cacheUrl;
      publicKey = keys.cache.publicKey;
      negativeTtl = 0;
    };
    # Only the fleet cache: nixpkgs appends cache.nixos.org (mkAfter, nixos/modules/config/
    # nix.nix), which the VLAN cannot reach, so every pull would wait through DNS retries.
    nix.settings.substituters = lib.mkForce [ config.homelab.nixCache.url ];
    homelab.services.monitoring = {
      enable = true;
      textfileDirectory = facts.textfileDirectory;
      # The cache node's Prometheus scrapes it (../nodes/cache.nix).
      nodeExporter.openFirewall = true;
    };

    environment.etc."ndh-variant".text = lib.mkDefault "v1";
    nix.settings.experimental-features = [ "nix-command" "flakes" ];
  };
}
