# A JSON-safe view of an evaluated (stubbed) NixOS configuration, for comparing a host with its
# twin (test_flake_twins.py): the option trees a twin must leave as the host has them, with
# paths as strings, derivations as their store paths, functions as "<function>" and values that
# fail to evaluate (an option without a value) as "<error>".
#   import ./project-config.nix config => { fileSystems; boot; networking; ... }
config:
let
  safe = v:
    let
      kind = builtins.tryEval (builtins.typeOf v);
      forced = builtins.tryEval (builtins.deepSeq v v);
    in
    if !kind.success then "<error>"
    else if kind.value == "set" then
      (if v ? outPath && builtins.isString v.outPath then v.outPath else builtins.mapAttrs (_: safe) v)
    else if kind.value == "list" then map safe v
    else if kind.value == "path" then toString v
    else if kind.value == "lambda" then "<function>"
    else if forced.success then v
    else "<error>";
  c = config;
in
safe {
  inherit (c) fileSystems swapDevices users nix systemd assertions;
  boot = {
    inherit (c.boot) loader kernelParams growPartition;
    luks = c.boot.initrd.luks;
    udev = c.boot.initrd.services.udev;
  };
  networking = {
    inherit (c.networking) hostName interfaces extraHosts usePredictableInterfaceNames
      defaultGateway nameservers firewall;
  };
  services = { inherit (c.services) openssh timesyncd prometheus harmonia nginx; };
  security = { inherit (c.security) sudo acme pki; };
  homelab = builtins.removeAttrs c.homelab [ "twin" ];
  # Each secret less its file (a twin's own); the keys sops-nix uses are homelab.secrets' (above).
  sops.secrets = builtins.mapAttrs (_: s: builtins.removeAttrs s [ "sopsFile" "sopsFileHash" ]) c.sops.secrets;
  system = { inherit (c.system) stateVersion name; toplevel = c.system.build.toplevel; };
}
