# The deploy user is no trusted Nix user: the target's daemon accepts only paths signed by a key
# it trusts, here the CI closure-signing key (users/deploy, trust = "signed-closures").
let keys = import ../keys; in
{
  environment.etc."ndh-variant".text = "signed-closures";
  homelab.users.deploy = {
    trust = "signed-closures";
    closureSigningKeys = [ keys.ci.publicKey ];
  };
}
