# The options of nixpkgs' qemu-vm.nix that test/fleet/nodes/snapshottable.nix post-processes,
# declared and defined as qemu-vm.nix declares and defines them (the store image drive, the
# pflash lines, system.build.vm with its start script in bin/run-<name>-vm, system.build as
# nixos/modules/system/build.nix declares it), so the module evaluates with nixpkgs' lib alone
# (test_nixos_snapshottable.py). runCommand keeps its build script, to be run by the test.
{ lib, useEFIBoot, useNixStoreImage, efiLine ? "-drive if=pflash,format=raw,unit=1,readonly=off,file=$NIX_EFI_VARS", storeFirst ? false
, vmOut ? "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-vm" }:
let
  inherit (lib) mkOption types;
  fakeDerivation = name: { type = "derivation"; inherit name; outPath = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-${name}"; };
  driveOpts = {
    options = {
      file = mkOption { type = types.str; };
      driveExtraOpts = mkOption { type = types.attrsOf types.str; default = { }; };
      deviceExtraOpts = mkOption { type = types.attrsOf types.str; default = { }; };
      name = mkOption { type = types.nullOr types.str; default = null; };
    };
  };
in
{
  options.boot.kernelParams = mkOption { type = types.listOf types.str; default = [ ]; };
  options.system.name = mkOption { type = types.str; default = "target"; };
  options.system.build = mkOption {
    type = types.submoduleWith { modules = [ { freeformType = types.lazyAttrsOf (types.uniq types.unspecified); } ]; };
    default = { };
  };
  options.virtualisation = {
    useEFIBoot = mkOption { type = types.bool; default = false; };
    useNixStoreImage = mkOption { type = types.bool; default = false; };
    host.pkgs = mkOption { type = types.raw; };
    qemu.package = mkOption { type = types.raw; default = fakeDerivation "qemu"; };
    qemu.options = mkOption { type = types.listOf types.str; default = [ ]; example = [ "-vga std" ]; description = "Options passed to QEMU."; };
    qemu.drives = mkOption { type = types.listOf (types.submodule driveOpts); description = "Drives passed to qemu."; };
  };
  config = {
    system.build.vm = fakeDerivation "nixos-vm" // { outPath = vmOut; meta.mainProgram = "run-target-vm"; };
    virtualisation = {
      inherit useEFIBoot useNixStoreImage;
      host.pkgs = {
        coreutils = fakeDerivation "coreutils";
        writeShellScript = name: text: fakeDerivation name // { inherit text; };
        runCommand = name: env: script: fakeDerivation name // removeAttrs env [ "passthru" ] // env.passthru or { } // { inherit script; };
      };
      qemu.options = lib.mkMerge [
        [ "-usb" ]
        (lib.mkIf useEFIBoot [
          "-drive if=pflash,format=raw,unit=0,readonly=on,file=/nix/store/0123456789abcdfghijklmnpqrsvwxyz-OVMF/FV/OVMF_CODE.fd"
          efiLine
        ])
      ];
      qemu.drives = lib.mkMerge [
        ((if storeFirst then lib.mkAfter else lib.id)
          [ { name = "root"; file = ''"$NIX_DISK_IMAGE"''; driveExtraOpts.cache = "writeback"; deviceExtraOpts.serial = "root"; } ])
        (lib.mkIf useNixStoreImage [
          { name = "nix-store"; file = ''"$TMPDIR"/store.img''; deviceExtraOpts.bootindex = "2"; driveExtraOpts.format = "raw"; }
        ])
      ];
    };
  };
}
