# A visible change, nothing else: a file and a package.
{ pkgs, ... }:
{
  environment.etc."ndh-variant".text = "v2";
  environment.systemPackages = [ pkgs.hello ];
}
