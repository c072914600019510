# What a twin changes in its host's configuration, item by item (docs/twins.md says why). Given
# to the host's VM variants by ./default.nix, so it is evaluated together with the host's own
# modules and nixpkgs' qemu-vm.nix; everything not named here is the host's own.
{ config, lib, pkgs, modulesPath, ... }:
let
  inherit (lib) mkForce mkIf mkVMOverride;
  cfg = config.homelab.twin;
  v = cfg.vlan;
  hex = n: lib.toLower (lib.fixedWidthString 2 "0" (lib.toHexString n));
  lastOctet = builtins.fromJSON (lib.last (lib.splitString "." cfg.address));

  # 52:54:00:13:<vlan>:<last octet>: unique on the VLAN as long as the addresses are, and
  # never one of the test framework's node MACs (52:54:00:12:<vlan>:<node>).
  mac = "52:54:00:13:${hex v}:${hex lastOctet}";
  socket = "QEMU_VDE_SOCKET_${toString v}";
  netdev = "twin-vlan${toString v}";
  # The VLAN NIC on the VDE switch the harness names in QEMU_VDE_SOCKET_<vlan>; without one (a
  # twin started by hand) on a restricted user network of its own, so the VM still starts and
  # the real deploy address reaches nothing. One quoted word, whatever the switch's path holds.
  nicOptions = [
    "-device virtio-net-pci,netdev=${netdev},mac=${mac}"
    ''-netdev "$(if [ -n "''${${socket}:-}" ]; then printf 'vde,id=${netdev},sock=%s' "''$${socket}"; else printf 'user,id=${netdev},restrict=on'; fi)"''
  ];

  # Host names on the twins' VLAN: every twin of the fleet, with the address it answers on.
  hostsLines = lib.mapAttrsToList (host: a: "${a.address} ${host}") cfg.addresses;

  secretNames = cfg.hostSecretNames;
  fileOf = name: "${builtins.hashString "sha256" name}.sops";
  testSecrets = pkgs.callPackage ./test-secrets.nix {
    recipientKey = ../test/fleet/keys/target-host-ed25519.pub;
    secrets = map
      (name: {
        file = fileOf name;
        inherit (config.sops.secrets.${name}) key format;
      })
      secretNames;
  };

  cache = config.homelab.nixCache;
in
{
  imports = [
    # The backdoor root shell the harness drives (testing.backdoor, on by default), and the
    # defaults it changes (docs/twins.md, item 2).
    (modulesPath + "/testing/test-instrumentation.nix")
    # QEMU may snapshot the twin: the UEFI variable store in qcow2, a read-only store image.
    ../test/fleet/nodes/snapshottable.nix
    # Certificates from the twins' local ACME stand-in, for a host that requests any.
    ./acme.nix
  ];

  options.homelab.twin.testSecrets = lib.mkOption {
    type = lib.types.raw;
    readOnly = true;
    internal = true;
    description = "The twin's test sops files (./test-secrets.nix), one per secret of the host.";
  };

  config = {
    assertions = [
      {
        assertion = config.boot.loader.systemd-boot.enable;
        message = "homelab.twin: ${config.networking.hostName} does not boot with systemd-boot; twins keep the host's systemd-boot on UEFI and know no other boot loader (docs/twins.md).";
      }
    ];

    # -- Boot: the host's systemd-boot on UEFI, from a disk with the store on it ---------------
    virtualisation.useBootLoader = true;
    virtualisation.useEFIBoot = true;
    # No 9p share (QEMU refuses snapshots with one mounted): the store is on the twin's disk.
    virtualisation.mountHostNixStore = false;
    virtualisation.sharedDirectories = mkForce { };
    virtualisation.memorySize = lib.mkDefault 2048;
    virtualisation.diskSize = lib.mkDefault 8192;
    virtualisation.fileSystems."/".autoResize = true;
    boot.growPartition = true;

    # -- Network: the host's deploy address on the twins' VLAN ---------------------------------
    # eth0 is QEMU's user network; restricted here too, so a twin started by hand reaches
    # nothing outside the host either (the harness restricts it as well).
    virtualisation.restrictNetwork = true;
    # The VLAN NIC is the twin's own: qemu-vm.nix only declares `vlans` (default [ 1 ]); the NixOS
    # test framework (nixos/lib/testing/network.nix) turns them into NICs, and a twin is no node
    # of a test. None, so that no qemu-vm.nix that did so would add a second one.
    virtualisation.vlans = [ ];
    virtualisation.qemu.options = nicOptions;
    boot.initrd.services.udev.rules = ''
      SUBSYSTEM=="net",ACTION=="add",ATTR{address}=="${mac}",NAME="${cfg.interface}"
    '';
    networking.interfaces.${cfg.interface}.ipv4.addresses = [
      { inherit (cfg) address prefixLength; }
    ];
    networking.extraHosts = lib.concatLines hostsLines;

    # -- Secrets: the same names, owners and modes, test files encrypted to the test host key --
    homelab.twin.testSecrets = testSecrets;
    homelab.secrets = mkIf (secretNames != [ ]) {
      # The host's real sops file stays out of the twin.
      sopsFile = mkForce null;
      # Build outputs: hashing them during evaluation would be import-from-derivation.
      validateSopsFiles = mkForce false;
    };
    sops.secrets = lib.genAttrs secretNames (name: {
      sopsFile = mkForce "${testSecrets}/${fileOf name}";
    });

    # -- Deploying: the twins' deployer logs in with the test deploy key --------------------
    # The host's own deploy keys (hosts/deploy-keys.nix) stay; their private halves are CI's and
    # people's, never the harness's. The twin deployer (./deployer.nix) holds the private half of
    # this TEST ONLY key, which reaches nothing but twins on their VLAN.
    homelab.users.deploy.authorizedKeys = lib.mkIf config.homelab.users.deploy.enable [
      (lib.removeSuffix "\n" (builtins.readFile ../test/fleet/keys/twin-deploy-ed25519.pub))
    ];

    # -- Internet-facing parts -----------------------------------------------------------------
    # ACME: ./acme.nix. Substituters: only the fleet's own cache (when the host uses it, itself
    # a twin on the VLAN): nixpkgs adds cache.nixos.org to every system's substituters.
    nix.settings.substituters = mkVMOverride (lib.optional cache.enable cache.url);
  };
}
