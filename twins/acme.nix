# A twin asks the twins' ACME stand-in for its certificates, never the real CA (docs/twins.md,
# item 7). Only for a host that requests certificates (security.acme.certs, nixpkgs' ACME module
# with lego as its client); any other host is left as it is. Imported by ./vm.nix.
#   - every certificate's default server is the stand-in's directory (./acme-server.nix);
#   - the twin trusts the TEST ONLY CA of the stand-in's listener, so lego accepts it;
#   - the stand-in's name resolves to the deployer's address on the VLAN.
# A twin could not reach the real CA anyway: its VLAN NIC is on the harness's VDE switch, which
# joins only the twins and their deployer, and its user network is restricted (./vm.nix).
{ config, lib, ... }:
let
  standIn = import ./acme-server.nix;
  host = config.networking.hostName;
  certs = config.security.acme.certs;
  names = builtins.attrNames certs;

  # Only the defaults are replaced: defining each certificate's server here would read
  # security.acme.certs to define it. A certificate that sets its own server, or does not
  # inherit the defaults (inheritDefaults = false: lego's own default, the real CA), is refused.
  elsewhere = builtins.filter (name: certs.${name}.server != standIn.directory) names;
  # Challenges that go through a service on the internet (a DNS provider's API, an S3 bucket):
  # a twin reaches none, and the stand-in does not replace them.
  # s3Bucket is newer than some nixpkgs releases this fleet evaluates with: absent means unused.
  online = builtins.filter (name: certs.${name}.dnsProvider != null || (certs.${name}.s3Bucket or null) != null) names;
  describe = f: lib.concatMapStringsSep ", " (name: "${name} (${f certs.${name}})");
in
{
  config = lib.mkIf (names != [ ]) {
    assertions = [
      {
        assertion = elsewhere == [ ];
        message = "homelab.twin: ${host}'s ACME certificates ${describe (c: "server ${if c.server == null then "null, lego's default" else c.server}") elsewhere} do not use the twins' ACME stand-in ${standIn.directory}: the twin replaces only security.acme.defaults.server, and a certificate that sets its own server (or inheritDefaults = false) would ask another CA, which a twin must never do (docs/twins.md, \"Internet-facing parts\").";
      }
      {
        assertion = online == [ ];
        message = "homelab.twin: ${host}'s ACME certificates ${describe (c: if c.dnsProvider != null then "dnsProvider ${c.dnsProvider}" else "s3Bucket ${c.s3Bucket}") online} answer their challenges through a service on the internet, which a twin cannot reach and has no stand-in for; give the twin webroot or listenHTTP instead, in the host's virtualisation.vmVariant (docs/twins.md, \"Internet-facing parts\").";
      }
    ];

    security.acme.defaults.server = lib.mkVMOverride standIn.directory;
    security.pki.certificateFiles = [ standIn.caCert ];
    networking.extraHosts = "${standIn.deployerAddress} ${standIn.name}\n";
  };
}
