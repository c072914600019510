# The address each host's twin (twins/, docs/twins.md) has on the twins' test VLAN, generated
# from the fleet so that every twin can name every other one. Builtins only: the tests
# evaluate it with mocks as well as with the real hosts.
#
#   import ./lib/twin-addresses.nix { subnet ? "192.168.0", prefixLength ? 24, firstStandIn ? 250 }
#     nixosConfigurations
#   => { <Host> = { address = "192.168.0.10"; prefixLength = 24; standIn = false; }; ... }
#
# Reads homelab.deploy.targetHost of every host (the address deploy-rs connects to):
#   - an IPv4 address is kept as it is: the twin answers on the host's real deploy address,
#     inside the VDE switch only (never on a real network). It must lie in `subnet`, the
#     fleet's LAN that the twins' VLAN stands for; another one is refused with the reason;
#   - a DNS name (a host whose address is not recorded here) gets a stand-in address in
#     `subnet`, counting down from .firstStandIn in alphabetical order of the hosts and
#     skipping every real address of the fleet; each twin's /etc/hosts maps the name to it, so
#     the name still reaches the twin. standIn says which;
#   - an IPv6 address is refused: twins have no IPv6 VLAN addresses yet.
{ subnet ? "192.168.0", prefixLength ? 24, firstStandIn ? 250 }:
nixosConfigurations:
let
  names = builtins.attrNames nixosConfigurations;
  targetOf = name: nixosConfigurations.${name}.config.homelab.deploy.targetHost;

  ipv4 = builtins.match "([0-9]+)[.]([0-9]+)[.]([0-9]+)[.]([0-9]+)";
  isIPv4 = address: ipv4 address != null;
  lastOctet = address: builtins.fromJSON (builtins.elemAt (ipv4 address) 3);
  inSubnet = address: builtins.substring 0 (builtins.stringLength subnet + 1) address == "${subnet}.";

  literal = builtins.filter (name: isIPv4 (targetOf name)) names;
  named = builtins.filter (name: !(isIPv4 (targetOf name))) names;
  usedOctets = map (name: lastOctet (targetOf name)) literal;

  checked = name:
    let address = targetOf name; in
    if builtins.match ".*:.*" address != null then
      throw "lib/twin-addresses.nix: ${name}'s deploy address ${address} is IPv6; twins have IPv4 VLAN addresses only (docs/twins.md)."
    else if isIPv4 address && !(inSubnet address) then
      throw "lib/twin-addresses.nix: ${name}'s deploy address ${address} is outside the twins' VLAN ${subnet}.0/${toString prefixLength}; twins of hosts in other subnets need a VLAN of their own (docs/twins.md)."
    else address;

  # Stand-in octets: firstStandIn, firstStandIn - 1, ... without the fleet's real ones.
  standIns = builtins.filter (octet: !(builtins.elem octet usedOctets))
    (builtins.genList (i: firstStandIn - i) firstStandIn);
  standInFor = builtins.listToAttrs (builtins.genList
    (i: {
      name = builtins.elemAt named i;
      value = "${subnet}.${toString (builtins.elemAt standIns i)}";
    })
    (builtins.length named));

  entry = name:
    let address = checked name; in
    if isIPv4 address then { inherit address prefixLength; standIn = false; }
    else { address = standInFor.${name}; inherit prefixLength; standIn = true; };
in
builtins.listToAttrs (map (name: { inherit name; value = entry name; }) names)
