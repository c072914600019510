# The modules of one host: its own folder under hosts/, what every host shares
# (hosts/common.nix), and its name. The folder's name is the host's name everywhere (flake
# attribute, deploy node, `test-<Name>` branch, networking.hostName), so a host folder never
# states it; it holds only what differs from hosts/common.nix. Builtins only, so the tests
# evaluate it without nixpkgs.
#
#   import ./lib/host-modules.nix { hostsDir = ./hosts; } "Niko"
#     => [ ./hosts/Niko ./hosts/common.nix { networking.hostName = "Niko"; } ]
#
# The host's folder comes first (tests/flake/mock-fleet.nix finds the host by it). The name is a
# plain definition, not a default: a folder that sets another networking.hostName fails to
# evaluate with conflicting definitions instead of deploying under a second name.
{ hostsDir }:
name: [
  (hostsDir + "/${name}")
  (hostsDir + "/common.nix")
  { networking.hostName = name; }
]
