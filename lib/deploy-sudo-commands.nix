# The sudo commands deploy-rs runs on a target as `sudo -u root ...`, as sudoers command specs.
# Builtins only, so the tests can evaluate it without nixpkgs.
#
#   import ./lib/deploy-sudo-commands.nix { tempPath, rmPaths ? [ "/run/current-system/sw/bin/rm" ] }
#     => { activate = "<spec>"; removeCanary = [ "<spec>" ... ]; all = [ ... ]; }
#
# What deploy-rs runs (serokell/deploy-rs src/deploy.rs, src/lib.rs):
#   <closure>/activate-rs activate '<closure>' --profile-... --temp-path '<tempPath>' ...
#   <closure>/activate-rs wait '<closure>' --temp-path '<tempPath>' ...
#   rm <tempPath>/deploy-rs-canary-<hash>     (make_lock_path: hash = the closure's store hash)
# where <closure> is /nix/store/<hash>-activatable-<name> (deploy-rs lib.activate.custom builds
# a buildEnv named "activatable-" + the base name).
#
# This is an accident guard, not isolation: whoever may run any activatable-*/activate-rs as root
# and can put a path into the store (nix copy as a trusted user, or simply building a derivation
# with that name) is root. See users/deploy/default.nix.
{ tempPath, rmPaths ? [ "/run/current-system/sw/bin/rm" ] }:
let
  # sudoers command wildcards: `*` in the path does not match "/"; in arguments it matches
  # anything, spaces included. So the canary name is spelled as exactly 32 characters of Nix's
  # base-32 alphabet (0-9, a-z without e, o, u, t): `rm <canary> /etc/shadow` cannot match.
  nixBase32Char = "[0-9a-df-np-sv-z]";
  storeHashPattern = builtins.concatStringsSep "" (builtins.genList (_: nixBase32Char) 32);

  hasTrailingSlash = builtins.match ".*/" tempPath != null;
  # sudoers treats these characters specially in a command spec; a temp path never needs them.
  unsafe = builtins.match ''.*[][,:=\\*? 	"'].*'' tempPath != null;

  # What is wrong with tempPath, or null. Exported too: the deploy module's assertion says the
  # same thing before evaluation gets here.
  tempPathProblem =
    if builtins.substring 0 1 tempPath != "/" then "must be an absolute path"
    else if hasTrailingSlash && tempPath != "/" then
      "must not end in \"/\" (deploy-rs joins it with the canary name)"
    else if unsafe then
      "contains a character sudoers would interpret; use a plain directory such as /tmp"
    else null;

  checkedTempPath =
    if tempPathProblem != null then
      throw "deploy-sudo-commands: tempPath \"${tempPath}\" ${tempPathProblem}"
    else tempPath;

  canaryPath =
    (if checkedTempPath == "/" then "" else checkedTempPath)
    + "/deploy-rs-canary-" + storeHashPattern;

  activate = "/nix/store/*-activatable-*/activate-rs";
  removeCanary = map (rm: "${rm} ${canaryPath}") rmPaths;
in
{
  inherit activate removeCanary canaryPath tempPathProblem;
  all = [ activate ] ++ removeCanary;
}
