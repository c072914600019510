# The flake's harness entry points (nix/package.nix, nix/micro-image.nix, nix/apps.nix)
# evaluated against stand-ins for nixpkgs' builders, with nixpkgs' real `lib` (NIXPKGS_LIB):
# what each would build, as data the tests check. Nothing here builds.
#
#   nixpkgsLib   path of a nixpkgs `lib` directory
#   kernel       a directory shaped like nixpkgs' kernel output (bzImage, lib/modules/<version>)
#   kernelVersion its module directory version
#   busybox, bash directories with bin/busybox and bin/bash (static)
{ nixpkgsLib, kernel ? "/kernel", kernelVersion ? "0.0.0", busybox ? "/busybox", bash ? "/bash" }:
let
  lib = import nixpkgsLib;
  drv = name: extra: { type = "derivation"; inherit name; outPath = "/nix/store/${name}"; meta = { }; } // extra;
  pythonPackage = name: drv "python-${name}" { pname = name; };
  python3Packages = {
    buildPythonPackage = args: drv "python-${args.pname}" args;
  } // lib.genAttrs [ "setuptools" "pytest" "pexpect" "pytest-xdist" "pytest-testinfra" "tenacity" "psutil"
    "prometheus-client" "jsonschema" "pyyaml" ] pythonPackage;

  package = import ../../nix/package.nix {
    inherit lib python3Packages;
    qemu = drv "qemu" { };
    vde2 = drv "vde2" { };
  };

  microImage = import ../../nix/micro-image.nix {
    inherit lib;
    stdenv.hostPlatform.linux-kernel.target = "bzImage";
    runCommand = name: env: buildCommand: drv name (env // { inherit buildCommand; });
    pkgsStatic = { busybox = busybox; bash = bash; };
    linuxPackages.kernel = { outPath = kernel; modDirVersion = kernelVersion; };
    kmod = drv "kmod" { };
    xz = drv "xz" { };
    zstd = drv "zstd" { };
    cpio = drv "cpio" { };
    e2fsprogs = drv "e2fsprogs" { };
    qemu = drv "qemu" { };
    guest = toString ../../harness/images/micro_guest; # the checkout's files, not a store copy
  };

  apps = import ../../nix/apps.nix {
    inherit lib;
    writeShellApplication = args: drv args.name (args // { meta.mainProgram = args.name; });
    python3.withPackages = select: drv "python-env" { packages = map (p: p.name) (select { }); };
    deploy-harness = package // { meta.mainProgram = "deploy-harness"; };
    micro-image = microImage;
    qemu = drv "qemu" { };
    vde2 = drv "vde2" { };
    openssh = drv "openssh" { };
    git = drv "git" { };
  };

  # The real flake.nix's outputs over a nixpkgs whose legacyPackages are these stand-ins
  # (callPackage with the names the flake and nix/ use) and a deploy-rs stand-in.
  pkgs = lib.genAttrs [ "qemu" "vde2" "openssh" "kmod" "xz" "zstd" "cpio" "e2fsprogs" "check-jsonschema" "shellcheck" "sudo" "git" "openssl"
    "sops" "age" "ssh-to-age" "prometheus" ]
    (name: drv name { }) // {
    inherit lib python3Packages;
    stdenv.hostPlatform.linux-kernel.target = "bzImage";
    pkgsStatic = { busybox = drv "busybox" { }; bash = drv "bash" { }; };
    linuxPackages.kernel = drv "linux" { modDirVersion = kernelVersion; };
    runCommand = name: env: buildCommand: drv name (env // { inherit buildCommand; });
    writeShellApplication = args: drv args.name (args // { meta.mainProgram = args.name; });
    python3 = { withPackages = select: drv "python-env" { packages = map (p: p.name) (select python3Packages); }; };
    mkShell = args: drv "shell" args;
    callPackage = fn: overrides: lib.callPackageWith pkgs fn overrides;
  };
  flake = (import ../../flake.nix).outputs {
    self = flake;
    nixpkgs = { inherit lib; legacyPackages.x86_64-linux = pkgs; };
    deploy-rs = { packages.x86_64-linux.default = drv "deploy-rs" { }; };
    sops-nix = { nixosModules.sops = { }; };
  };
  system = "x86_64-linux";
in
{
  package = {
    inherit (package) pname pyproject pythonImportsCheck doCheck makeWrapperArgs;
    dependencies = map (p: p.pname) package.dependencies;
    mainProgram = package.meta.mainProgram;
  };
  microImage = {
    inherit (microImage) name buildCommand;
    tools = map (p: p.name) microImage.nativeBuildInputs;
  };
  apps = lib.mapAttrs (name: app: { inherit (app) name text; inputs = map (p: p.name) app.runtimeInputs; }) apps;
  flake = {
    packages = builtins.attrNames flake.packages.${system};
    apps = flake.apps.${system};
    devShell = {
      packages = map (p: p.name) flake.devShells.${system}.default.packages;
      python = map (name: lib.removePrefix "python-" name)
        (lib.findFirst (p: p.name == "python-env") null flake.devShells.${system}.default.packages).packages;
      inherit (flake.devShells.${system}.default) shellHook;
    };
  };
}
