# What a secrets variant adds to the target: one sops-nix secret, decrypted at activation with
# the target's fixed test host key (homelab.secrets), owned by a user of its own with mode 0440.
#   import ./variant.nix "<label>" => a NixOS module
# /etc/ndh-secret-sha256 and /etc/ndh-secret.sops point the scenario at what to expect.
label:
{ pkgs, ... }:
let
  encrypted = pkgs.callPackage ./encrypted.nix { inherit label; };
in
{
  users.users.ndh-secret-reader = {
    isSystemUser = true;
    group = "ndh-secret-reader";
  };
  users.groups.ndh-secret-reader = { };

  homelab.secrets = {
    sopsFile = "${encrypted}/secret.sops";
    # A build output: hashing it during evaluation would be import-from-derivation.
    validateSopsFiles = false;
  };
  sops.secrets.ndh-test-secret = {
    owner = "ndh-secret-reader";
    mode = "0440";
    format = "binary";
  };

  environment.etc."ndh-secret-sha256".source = "${encrypted}/plaintext.sha256";
  environment.etc."ndh-secret.sops".source = "${encrypted}/secret.sops";
}
