# `target` and `target2`: a fleet host as the homelab modules make it (deploy user, fleet cache
# client, monitoring), booted the way hardware boots (UEFI, systemd-boot, the store on its own
# disk), so that reboots, `deploy --boot` and boot defaults mean what they mean on a real host
# (docs/nixos-facts.md, "Booting a test VM").
#
# The variants the scenarios deploy (../variants) are this very node extended with one module
# each (extendModules), exposed as `homelabTest.variants.<name>` for ../outputs.nix. Their
# closures, except cache-pull's, are preloaded into this node's store: deploys then copy only
# deploy-rs's small activation wrapper and cache-pull's closure, into a root file system that is
# grown to the disk's 8 GiB at boot (nixpkgs' make-disk-image sizes it to its contents).
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
      # With useBootLoader, qemu-vm.nix builds the disk with make-disk-image (diskSize "auto",
      # additionalSpace "0M": the root partition ends where the preloaded closures end) and
      # starts the VM on a qcow2 overlay of diskSize MiB over it: this size grows only the
      # virtual disk. It must stay above the image's size (a smaller overlay cuts the disk),
      # and the root partition and file system are grown into it at boot (below), so / really
      # has about 8 GiB (less the 256 MiB ESP). Checked by evaluation only, not on a booted VM.
      diskSize = 8192;
      # Here, not in `fileSystems`: qemu-vm.nix replaces that with this (mkVMOverride).
      fileSystems."/".autoResize = true;
      additionalPaths = map (variant: variant.config.system.build.toplevel)
        (lib.attrValues (removeAttrs config.homelabTest.variants [ "cache-pull" ]));
    };
    boot.loader.systemd-boot.enable = true;
    boot.loader.efi.canTouchEfiVariables = true;
    # Grows the root partition to the end of the disk (nixpkgs' growpart); autoResize above
    # then grows the file system into it.
    boot.growPartition = true;

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
      # The canary's directory; the deploy-user scenario names a canary in it.
      tempPath = facts.deployTempPath;
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
