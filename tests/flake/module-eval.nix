# Evaluates homelab modules (or whole host folders) with nixpkgs' lib but without nixpkgs: the
# NixOS options our modules and hosts touch are declared here, with NixOS's defaults where they
# are read. sops-nix's NixOS module is the real one, from a sops-nix source tree (flake.nix gives
# it to every host); the stand-ins below include what it reads. Used by test_flake_modules.py
# when NIXPKGS_LIB and SOPS_NIX are set.
#
# NixOS's VM variants (nixos/modules/virtualisation/build-vm.nix, in every NixOS system) are
# declared the way that file declares them: the configuration extended with qemu-vm.nix, here
# the stand-in under ./nixos-stubs, which is also `modulesPath` (its layout is nixpkgs'
# nixos/modules/), so `modulesPath + "/testing/test-instrumentation.nix"` finds a stand-in too.
#
#   import ./module-eval.nix { lib = import <nixpkgs lib>; sopsNix = <sops-nix tree>; modules = [ ... ];
#                              harmoniaShape = "cache"; scriptsAsText = false; }
#     => { config; failedAssertions; warnings; }
{ lib, sopsNix, modules, harmoniaShape ? "cache", scriptsAsText ? false }:
let
  inherit (lib) mkOption types;

  fakeDerivation = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-${name}";
  };

  # Only what our modules call.
  pkgs = {
    bashInteractive = fakeDerivation "bash-interactive-5.2";
    coreutils = fakeDerivation "coreutils-9.5";
    nix = fakeDerivation "nix-2.28";
    # nixpkgs' callPackage where this set has every argument the file names, optional ones
    # too (sops-nix's manifest-for.nix); otherwise a fake package named after the file. An
    # optional argument left to its default could import <nixpkgs> (sops-nix's own default.nix).
    callPackage = file: args:
      let
        fn = import file;
        available = pkgs // { inherit lib; } // args;
        complete = builtins.all (name: available ? ${name}) (builtins.attrNames (builtins.functionArgs fn));
      in
      if builtins.isFunction fn && complete then fn (builtins.intersectAttrs (builtins.functionArgs fn) available)
      else fakeDerivation "called-${baseNameOf (toString file)}";
    # scriptsAsText: a script's outPath is its text, so a test can read (and run) what a unit's
    # ExecStart would run.
    writeShellScript = name: text:
      if scriptsAsText then fakeDerivation name // { outPath = text; } else fakeDerivation name;
    # Keeps the build script, so tests can read what a derivation would run.
    runCommand = name: env: script: fakeDerivation name // { inherit env script; };
    sops = fakeDerivation "sops-3.9";
    pebble = fakeDerivation "pebble-2.6.0";
    ssh-to-age = fakeDerivation "ssh-to-age-1.1";
    # Keeps the text, so tests can read what a module writes (e.g. the rendered alert rules).
    writeText = name: text: fakeDerivation name // { inherit text; };
    # sops-nix writes its manifest with it; its checkPhase (sops-install-secrets) never runs here.
    writeTextFile = { name, text, ... }: fakeDerivation name // { inherit text; };
  };

  option = type: default: mkOption { inherit type default; };
  lines = mkOption { type = types.listOf types.str; default = [ ]; };
  raws = mkOption { type = types.listOf types.raw; default = [ ]; };

  harmoniaOptions = {
    cache = {
      package = option types.raw (fakeDerivation "harmonia");
      cache = {
        enable = option types.bool false;
        signKeyPath = option (types.nullOr types.path) null;
        signKeyPaths = option (types.listOf types.path) [ ];
        settings = option (types.attrsOf types.anything) { };
      };
    };
    flat-list = {
      enable = option types.bool false;
      signKeyPath = option (types.nullOr types.path) null;
      signKeyPaths = option (types.listOf types.path) [ ];
      settings = option (types.attrsOf types.anything) { };
    };
    flat-single = {
      enable = option types.bool false;
      signKeyPath = option (types.nullOr types.path) null;
      settings = option (types.attrsOf types.anything) { };
    };
  }.${harmoniaShape};

  # Namespaces our modules set but never read are free-form attrsets. (A top-level freeformType
  # would recurse: every `mkIf cfg.enable` would have to be decided before `config` exists.)
  anything = option (types.attrsOf types.anything) { };

  letsEncrypt = "https://acme-v02.api.letsencrypt.org/directory";

  nixosStub = { config, ... }: let outer = config; in {
    options = {
      assertions = raws;
      warnings = lines;
      # NixOS elaborates the platform; deploy-nodes.nix reads .system.
      nixpkgs.hostPlatform = mkOption {
        type = types.raw;
        default = "x86_64-linux";
        apply = platform: if builtins.isString platform then { system = platform; } else platform;
      };
      # Free-form as in NixOS: sops-nix puts its manifests here.
      # A submoduleWith, as nixos/modules/system/build.nix declares it (snapshottable.nix declares it again).
      system.build = mkOption {
        type = types.submoduleWith {
          modules = [{
            freeformType = types.lazyAttrsOf types.raw;
            options.toplevel = option types.str "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-stub";
          }];
        };
        default = { };
      };
      networking.hostName = option types.str "nixos";
      networking.interfaces = anything;
      networking.extraHosts = option types.lines "";
      networking.usePredictableInterfaceNames = option types.bool true;
      networking.defaultGateway = option (types.nullOr types.anything) null;
      networking.nameservers = lines;
      system.name = option types.str config.networking.hostName;
      swapDevices = raws;
      boot.initrd.luks.devices = anything;
      boot.initrd.services.udev.rules = option types.lines "";
      boot.kernelParams = lines;
      boot.growPartition = option types.bool false;
      services.timesyncd.enable = option types.bool true;
      # nixos/modules/security/acme: the options twins read or set. A certificate's `server`
      # defaults to security.acme.defaults.server unless it sets inheritDefaults = false (then
      # to Let's Encrypt's production directory, as upstream's inheritable options do); other
      # settings of a certificate or the defaults are free-form here.
      security.acme.acceptTerms = option types.bool false;
      security.acme.defaults = mkOption {
        type = types.submodule {
          freeformType = types.attrsOf types.anything;
          options = {
            server = option (types.nullOr types.str) letsEncrypt;
            email = option (types.nullOr types.str) null;
          };
        };
        default = { };
      };
      security.acme.certs = mkOption {
        type = types.attrsOf (types.submodule ({ config, ... }: {
          freeformType = types.attrsOf types.anything;
          options = {
            inheritDefaults = option types.bool true;
            server = option (types.nullOr types.str)
              (if config.inheritDefaults then outer.security.acme.defaults.server else letsEncrypt);
            dnsProvider = option (types.nullOr types.str) null;
            s3Bucket = option (types.nullOr types.str) null;
          };
        }));
        default = { };
      };
      security.pki.certificateFiles = option (types.listOf types.path) [ ];
      networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
      boot.loader.efi.efiSysMountPoint = option types.str "/boot";
      boot.loader.efi.canTouchEfiVariables = option types.bool false;
      boot.loader.systemd-boot.enable = option types.bool false;
      boot.loader.systemd-boot.xbootldrMountPoint = option (types.nullOr types.str) null;
      fileSystems = anything;
      users.users = anything;
      users.groups = anything;
      security.sudo.enable = option types.bool true;
      security.sudo.extraRules = raws;
      nix.package = option types.raw pkgs.nix;
      nix.settings = mkOption {
        type = types.submodule {
          freeformType = types.attrsOf types.anything;
          options = {
            substituters = lines;
            trusted-public-keys = lines;
            trusted-users = lines;
            experimental-features = lines;
          };
        };
        default = { };
      };
      services.harmonia = harmoniaOptions;
      services.nginx = anything;
      services.openssh = anything;
      services.prometheus = anything;
      systemd.services = anything;
      systemd.timers = anything;
      systemd.paths = anything;
      systemd.tmpfiles.rules = lines;
      system.activationScripts = anything;
      system.stateVersion = option types.str "26.05";
    };
    config._module.args.pkgs = pkgs;
    # nixos/modules/config/nix.nix appends the public cache to every system's substituters.
    config.nix.settings.substituters = lib.mkAfter [ "https://cache.nixos.org/" ];
  };

  # build-vm.nix's options: the VM variants. `system.build.vm` is the plain variant's VM.
  buildVmStub = { config, extendModules, modulesPath, ... }:
    let
      vmVariant = extendModules { modules = [ (modulesPath + "/virtualisation/qemu-vm.nix") ]; };
      vmVariantWithBootLoader = vmVariant.extendModules {
        modules = [ ({ config, ... }: {
          virtualisation.useBootLoader = true;
          virtualisation.useEFIBoot = config.boot.loader.systemd-boot.enable || config.boot.loader.efi.canTouchEfiVariables;
        }) ];
      };
    in
    {
      options.virtualisation.vmVariant = mkOption { inherit (vmVariant) type; default = { }; };
      options.virtualisation.vmVariantWithBootLoader = mkOption { inherit (vmVariantWithBootLoader) type; default = { }; };
      config.system.build.vm = lib.mkDefault config.virtualisation.vmVariant.system.build.vm;
      config.system.build.vmWithBootLoader = lib.mkDefault config.virtualisation.vmVariantWithBootLoader.system.build.vm;
    };

  evaluated = lib.evalModules {
    specialArgs.modulesPath = ./nixos-stubs;
    modules = [ nixosStub buildVmStub (sopsNix + "/modules/sops") ] ++ modules;
  };
  inherit (evaluated) config;
in
{
  inherit config;
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  inherit (config) warnings;
}
