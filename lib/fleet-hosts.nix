# The fleet's NixOS configurations: one per folder under hosts/ (adding a folder adds the host),
# each with the fleet facts generated from all of them and the twin module (twins/, docs/twins.md:
# a VM of the host in its VM variants, the host's own system unchanged). flake.nix calls it with
# nixpkgs' nixosSystem and sops-nix's module; the tests call it with their module evaluator.
#
#   import ./lib/fleet-hosts.nix { nixosSystem, modules ? [ ], twins ? ../twins }
#     nixosSystem  { modules } -> an evaluated system with `config` (nixpkgs.lib.nixosSystem)
#     modules      added to every host (sops-nix.nixosModules.sops)
#     twins        the twin module every host gets, with the twin addresses; the tests pass
#                  null to compare each host with and without it
#   => { <Host> = <evaluated system>; ... }
#
# Fleet facts: homelab.services.monitoring.prometheus.scrapeTargets, the node exporters of every
# deployable host (./scrape-targets.nix); homelab.twin.addresses, every twin's address on the
# twins' VLAN (./twin-addresses.nix). Evaluation is lazy, so each host may read facts that
# come from every host's configuration, its own included, as long as no fact depends on itself.
{ nixosSystem, modules ? [ ], twins ? ../twins }:
let
  entries = builtins.readDir ../hosts;
  hostModules = import ./host-modules.nix { hostsDir = ../hosts; };
  names = builtins.filter (name: entries.${name} == "directory") (builtins.attrNames entries);

  fleetFacts = {
    homelab.services.monitoring.prometheus.scrapeTargets = import ./scrape-targets.nix configurations;
  };
  twinModules = if twins == null then [ ] else [
    twins
    { homelab.twin.addresses = import ./twin-addresses.nix { } configurations; }
  ];

  configurations = builtins.listToAttrs (map
    (name: {
      inherit name;
      # The host's own modules first (lib/host-modules.nix: its folder, hosts/common.nix, its name).
      value = nixosSystem { modules = hostModules name ++ modules ++ [ fleetFacts ] ++ twinModules; };
    })
    names);
in
configurations
