# `nix run .#scenarios` (pytest scenarios/ from the checkout in the current directory),
# `nix run .#deploy-harness` and `nix run .#rehearse` (`deploy-harness rehearse`, which checks
# out base and head with git), each with the flake's micro image and the tools the VMs need. The
# user's own `nix` stays in charge of building the NixOS nodes (it talks to the user's daemon).
{ lib
, writeShellApplication
, python3
, deploy-harness
, micro-image
, qemu
, vde2
, openssh
, git
}:

let
  python = python3.withPackages (ps: [ deploy-harness ]);
  tools = [ python qemu vde2 openssh ];
  # Defaults a user can override: the Nix-built micro image, and the checkout as the flake the
  # NixOS nodes come from (an installed package cannot know where the checkout is).
  environment = ''
    export NDH_MICRO_IMAGE="''${NDH_MICRO_IMAGE:-${micro-image}}"
    export NDH_FLAKE="''${NDH_FLAKE:-$PWD}"
  '';
in
{
  scenarios = writeShellApplication {
    name = "ndh-scenarios";
    runtimeInputs = tools;
    text = ''
      if [ ! -f scenarios/conftest.py ] || [ ! -f flake.nix ]; then
        echo "nix run .#scenarios: run it from the root of a nixos-deploy-harness checkout (no scenarios/conftest.py in $PWD)" >&2
        exit 2
      fi
      ${environment}
      # The NixOS tier is what this command is for: a run where no NixOS scenario ran fails
      # (exit status 5, its last line says why) instead of passing with the micro pre-flight.
      exec python -m pytest scenarios/ --require-nixos "$@"
    '';
  };

  deploy-harness = writeShellApplication {
    name = "deploy-harness";
    runtimeInputs = tools;
    text = ''
      ${environment}
      exec ${lib.getExe deploy-harness} "$@"
    '';
  };

  # `nix run .#rehearse -- --base REF --head REF`: the deploy rehearsal from the checkout in
  # the current directory (docs/rehearsal.md); the pull-request workflow's rehearse job runs it.
  rehearse = writeShellApplication {
    name = "ndh-rehearse";
    runtimeInputs = tools ++ [ git ];
    text = ''
      ${environment}
      exec ${lib.getExe deploy-harness} rehearse "$@"
    '';
  };
}
