# Twins as deploy-rs nodes: the same generator as the real deploy (./deploy-nodes.nix), fed
# each host's twin instead of the host (docs/twins.md, "Deploying to twins").
#
#   import ./lib/twin-deploy.nix { deployNodes, hosts ? null } nixosConfigurations
#     => { nodes = { <Host> = <deploy-rs node>; ... }; }
#
#   deployNodes   `import ./deploy-nodes.nix { activate; testHost; }`, exactly what flake.nix
#                 gives the real `deploy` output.
#   hosts         null for every host, or a list of host names (the booted twins): a name that
#                 is no host is refused with the reason.
#
# A twin is the host's `virtualisation.vmVariant` (nixpkgs nixos/modules/virtualisation/
# build-vm.nix: the host's configuration extended with qemu-vm.nix and twins/vm.nix; the value of
# the option is that extended configuration's `config`). Its `system.build.toplevel` is what the
# twin booted from `system.build.vm` runs, so a deploy to a twin activates a twin's system, never
# the host's (which has the host's disks and real secrets). Node settings (hostname, sshUser,
# magic rollback, timeouts) are read from the twin, where they equal the host's.
{ deployNodes, hosts ? null }:
nixosConfigurations:
let
  allNames = builtins.attrNames nixosConfigurations;
  names = if hosts == null then allNames else hosts;
  unknown = builtins.filter (name: !(builtins.elem name allNames)) names;
  twinOf = name: { config = nixosConfigurations.${name}.config.virtualisation.vmVariant; };
in
if unknown != [ ] then
  throw "lib/twin-deploy.nix: no host named ${builtins.concatStringsSep ", " unknown} (hosts: ${builtins.concatStringsSep ", " allNames})"
else
  deployNodes (builtins.listToAttrs (map (name: { inherit name; value = twinOf name; }) names))
