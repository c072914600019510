# Every test node snapshot-able by QEMU, so the harness restores the fleet between scenarios
# instead of cold-booting it (docs/snapshots.md). nixpkgs' qemu-vm.nix attaches two drives
# that `savevm` refuses ("is writable but does not support snapshots"), and has no option for
# either, so this module post-processes its lists with `apply` (a second declaration of an
# option may add `apply` when the first has none):
#   - the Nix store image (useNixStoreImage: an erofs image mounted read-only) is attached as
#     a writable raw drive: here it gets `readonly=on`, and QEMU skips read-only drives;
#   - the UEFI variable store (useEFIBoot) is a raw pflash drive on $NIX_EFI_VARS: here the
#     file is turned into qcow2 (../efi-vars-qcow2.sh) and attached as qcow2, which snapshots.
# QEMU saves a snapshot's memory to the first drive that snapshots: the root disk, drive1 (the
# harness gives that drive faster I/O by its id, harness/images/nixos.py). Freed guest pages are
# zeroed (init_on_free=1), so snapshots skip them instead of saving stale contents.
# If nixpkgs changes any of these, building the VM fails with a message (below) rather than
# falling back to cold boots silently.
{ config, lib, ... }:
let
  cfg = config.virtualisation;
  hostPkgs = cfg.host.pkgs;

  efiVarsToQcow2 = hostPkgs.writeShellScript "ndh-efi-vars-qcow2" ''
    PATH=${cfg.qemu.package}/bin:${hostPkgs.coreutils}/bin:$PATH
    ${builtins.readFile ../efi-vars-qcow2.sh}
  '';

  isEfiVarsDrive = option: lib.hasInfix "if=pflash" option && lib.hasInfix "$NIX_EFI_VARS" option;
  qcow2EfiVars = option:
    if isEfiVarsDrive option then
      builtins.replaceStrings
        [ "format=raw" "file=$NIX_EFI_VARS" ]
        [ "format=qcow2" "file=\"$(${efiVarsToQcow2} \"$NIX_EFI_VARS\")\"" ]
        option
    else option;

  readOnlyStore = drive:
    if drive.name == "nix-store" then
      drive // { driveExtraOpts = drive.driveExtraOpts // { readonly = "on"; }; }
    else drive;

  changed = what: ''
    test/fleet/nodes/snapshottable.nix: nixpkgs' qemu-vm.nix no longer attaches ${what} the
    way this module expects, so QEMU may refuse to snapshot this node. Read qemu-vm.nix
    (virtualisation.qemu.options / virtualisation.qemu.drives) and update this module.'';
in
{
  options.virtualisation.qemu = {
    options = lib.mkOption {
      apply = options:
        if cfg.useEFIBoot && !lib.any isEfiVarsDrive options then
          throw (changed "the UEFI variable store (a pflash drive on $NIX_EFI_VARS)")
        else map qcow2EfiVars options;
    };
    drives = lib.mkOption {
      apply = drives:
        if cfg.useNixStoreImage && !lib.any (drive: drive.name == "nix-store") drives then
          throw (changed "the Nix store image (a drive named nix-store)")
        else if drives == [ ] || (lib.head drives).name != "root" then
          throw (changed "the root disk as its first drive (drive1)"
            + "\nA node without a root disk (virtualisation.diskImage = null) cannot be snapshotted"
            + " by the harness at all: give it a disk.")
        else map readOnlyStore drives;
    };
  };

  config.boot.kernelParams = [ "init_on_free=1" ];
}
