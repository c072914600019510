# A sops-nix secret (A), encrypted at build time to the targets' fixed test host key
# (../secrets): the secrets scenario deploys it and checks path, owner, mode and content.
{
  imports = [ (import ../secrets/variant.nix "a") ];
  environment.etc."ndh-variant".text = "secret-a";
}
