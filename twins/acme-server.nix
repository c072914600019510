# Where the twins' local ACME stand-in answers (docs/twins.md, "Internet-facing parts"): pebble
# on the twins' deployer (./pebble.nix runs it), asked by every twin whose host requests
# certificates (./acme.nix). One file for both sides, so that they cannot drift apart.
let
  keys = (import ../test/fleet/keys).twinAcme;
in
rec {
  # The deployer's address on the twins' VLAN: homelab.twinDeployer.address's default, and the
  # address twins resolve `name` to.
  deployerAddress = "192.168.0.2";
  name = "acme.twins";
  port = 14000;
  # pebble serves its ACME directory at /dir (wfe.DirectoryPath in pebble's source).
  directory = "https://${name}:${toString port}/dir";
  # TEST ONLY (test/fleet/keys/default.nix): the CA twins trust, the listener's certificate and key.
  inherit (keys) caCert cert key;
}
