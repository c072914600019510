# Keys for the NixOS test only. The cache's secret key is in this repository and ends up in the
# world-readable Nix store: never trust `ndh-test-cache-1` anywhere but in test VMs.
#   cache.secretFile   Harmonia's signing key on the `cache` node
#   cache.publicKey    what the targets trust (homelab.nixCache.publicKey)
#   ci.secretFile      the CI closure-signing key, on the deployer (ci/deploy-plan --exec sign)
#   ci.publicKey       what targets in trust = "signed-closures" mode trust
#   untrustedPublicKey a key nobody signs with: trusting only it must make a target refuse the
#                      cache's paths (the cache-pull scenario)
#   targetHostPublicKey
#                      the targets' fixed SSH host key (TEST ONLY), to which the secrets
#                      scenario's secrets are encrypted (ssh-to-age at build time). Its private
#                      half, target-host-ed25519, is never referenced from Nix, so it reaches no
#                      store: the scenario writes it onto the target over the backdoor, as an
#                      installed host has its key before any secret is deployed.
#   twinAcme           the twins' local ACME stand-in (twins/acme-server.nix, docs/twins.md), all
#                      TEST ONLY, made by ./make-twin-acme-test-certs.sh with openssl:
#     .caCert          twin-acme-test-ca.pem: the CA that twins requesting certificates trust
#                      (security.pki.certificateFiles). Its name constraints permit only
#                      acme.twins and deployer, and its private key was thrown away when it was
#                      made: it vouches for nothing else and nothing more can be signed with it
#     .cert, .key      twin-acme-test-server.pem and .key: the certificate (acme.twins, deployer;
#                      100 years) and key that pebble serves its ACME API with on the twins'
#                      deployer. The key is in this repository and in the store: never use
#                      either outside twins
# The deploy SSH key pair is nixpkgs' snakeoil pair (nixos/tests/ssh-keys.nix), the same one
# nixpkgs' own tests use.
let
  line = file: builtins.replaceStrings [ "\n" ] [ "" ] (builtins.readFile file);
in
{
  cache = {
    secretFile = ./cache-signing-key.sec;
    publicKey = line ./cache-signing-key.pub;
  };
  ci = {
    secretFile = ./ci-signing-key.sec;
    publicKey = line ./ci-signing-key.pub;
  };
  untrustedPublicKey = line ./untrusted-key.pub;
  targetHostPublicKey = ./target-host-ed25519.pub;
  twinAcme = {
    caCert = ./twin-acme-test-ca.pem;
    cert = ./twin-acme-test-server.pem;
    key = ./twin-acme-test-server.key;
  };
}
