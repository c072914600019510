# Stand-in for nixpkgs' nixos/modules/virtualisation/qemu-vm.nix, for module-eval.nix: the
# options the twins (twins/) and test/fleet/nodes/snapshottable.nix read or set, with qemu-vm.nix's
# defaults, and the parts of its config a twin's checks depend on, written from what that file
# does (nixos-26.05's generation; docs/twins.md names each fact):
#   - fileSystems: replaced by virtualisation.fileSystems with mkVMOverride (priority 10), which
#     holds "/" on the root disk, the ESP on /boot with useBootLoader + useEFIBoot, and the
#     store image or 9p store when used; swapDevices and LUKS devices are emptied the same way;
#   - the UEFI variable store as a raw pflash drive on $NIX_EFI_VARS with useEFIBoot, the root
#     disk as the first drive (the shapes snapshottable.nix checks);
#   - usePredictableInterfaceNames off, timesyncd off; system.build.vm a VM named after system.name.
# Nothing here builds: packages are the fake derivations of module-eval.nix's pkgs.
{ config, lib, options, pkgs, ... }:
let
  inherit (lib) mkOption types mkIf mkVMOverride;
  cfg = config.virtualisation;
  option = type: default: mkOption { inherit type default; };
  fake = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-${name}";
  };
in
{
  options = {
    virtualisation = {
      fileSystems = options.fileSystems;
      memorySize = option types.ints.positive 1024;
      cores = option types.ints.positive 1;
      diskSize = option types.ints.positive 1024;
      diskImage = option (types.nullOr types.str) "./${config.system.name}.qcow2";
      rootDevice = option (types.nullOr types.str) "/dev/disk/by-label/nixos";
      bootPartition = option (types.nullOr types.str)
        (if cfg.useEFIBoot then "/dev/disk/by-label/ESP" else null);
      useBootLoader = option types.bool false;
      useEFIBoot = option types.bool false;
      useDefaultFilesystems = option types.bool true;
      installBootLoader = option types.bool (cfg.useBootLoader && cfg.useDefaultFilesystems);
      directBoot.enable = option types.bool (!cfg.useBootLoader);
      efi.keepVariables = option types.bool cfg.useBootLoader;
      useNixStoreImage = option types.bool false;
      mountHostNixStore = option types.bool (!cfg.useNixStoreImage && !cfg.useBootLoader);
      writableStore = option types.bool cfg.mountHostNixStore;
      writableStoreUseTmpfs = option types.bool true;
      sharedDirectories = option (types.attrsOf (types.attrsOf types.str)) { };
      additionalPaths = option (types.listOf types.raw) [ ];
      graphics = option types.bool true;
      restrictNetwork = option types.bool false;
      vlans = option (types.listOf types.ints.unsigned) (if cfg.interfaces == { } then [ 1 ] else [ ]);
      interfaces = option (types.attrsOf types.anything) { };
      forwardPorts = option (types.listOf types.anything) [ ];
      host.pkgs = option types.raw pkgs;
      qemu = {
        package = option types.raw (fake "qemu-host-cpu-only");
        options = option (types.listOf types.str) [ ];
        networkingOptions = option (types.listOf types.str) [ ];
        drives = option (types.listOf (types.attrsOf types.anything)) [ ];
      };
    };
  };

  config = {
    virtualisation.sharedDirectories = {
      nix-store = mkIf cfg.mountHostNixStore { source = builtins.storeDir; target = "/nix/.ro-store"; };
      xchg = { source = ''"$TMPDIR"/xchg''; target = "/tmp/xchg"; };
      shared = { source = ''"''${SHARED_DIR:-$TMPDIR/xchg}"''; target = "/tmp/shared"; };
    };
    virtualisation.fileSystems = lib.mkMerge [
      (lib.mapAttrs' (tag: share: lib.nameValuePair share.target { device = tag; fsType = "9p"; })
        cfg.sharedDirectories)
      {
        "/" = mkIf cfg.useDefaultFilesystems
          (if cfg.diskImage == null then { device = "tmpfs"; fsType = "tmpfs"; }
           else { device = cfg.rootDevice; fsType = "ext4"; });
        "/nix/.ro-store" = mkIf cfg.useNixStoreImage {
          device = "/dev/disk/by-label/nix-store";
          fsType = "erofs";
        };
        ${config.boot.loader.efi.efiSysMountPoint} = mkIf (cfg.useBootLoader && cfg.bootPartition != null) {
          device = cfg.bootPartition;
          fsType = "vfat";
        };
      }
    ];
    fileSystems = mkIf (cfg.fileSystems != { }) (mkVMOverride cfg.fileSystems);
    swapDevices = (if cfg.useDefaultFilesystems then mkVMOverride else lib.mkDefault) [ ];
    boot.initrd.luks.devices = (if cfg.useDefaultFilesystems then mkVMOverride else lib.mkDefault) { };

    virtualisation.qemu.networkingOptions = [
      "-net nic,netdev=user.0,model=virtio"
      ''-netdev user,id=user.0,${lib.optionalString cfg.restrictNetwork "restrict=on,"}"$QEMU_NET_OPTS"''
    ];
    virtualisation.qemu.options = mkIf cfg.useEFIBoot [
      "-drive if=pflash,format=raw,unit=0,readonly=on,file=/nix/store/0123456789abcdfghijklmnpqrsvwxyz-OVMF-fd/FV/OVMF_CODE.fd"
      "-drive if=pflash,format=raw,unit=1,readonly=off,file=$NIX_EFI_VARS"
    ];
    virtualisation.qemu.drives = lib.mkMerge [
      (mkIf (cfg.diskImage != null) [{
        name = "root";
        file = ''"$NIX_DISK_IMAGE"'';
        driveExtraOpts = { cache = "writeback"; werror = "report"; };
        deviceExtraOpts = { bootindex = "1"; serial = "root"; };
      }])
      (mkIf cfg.useNixStoreImage [{
        name = "nix-store";
        file = ''"$TMPDIR"/store.img'';
        driveExtraOpts = { format = "raw"; };
        deviceExtraOpts = { bootindex = "2"; };
      }])
    ];

    services.timesyncd.enable = false;
    networking.usePredictableInterfaceNames = false;
    system.build.vm = fake "nixos-vm" // { meta.mainProgram = "run-${config.system.name}-vm"; };
  };
}
