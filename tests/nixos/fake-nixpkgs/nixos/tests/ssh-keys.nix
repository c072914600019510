# Stand-in for nixpkgs' nixos/tests/ssh-keys.nix (same attribute names) for module evaluation.
pkgs: {
  snakeOilPrivateKey = pkgs.writeText "privkey.snakeoil" "not a key";
  snakeOilPublicKey = "ecdsa-sha2-nistp256 AAAAstub snakeoil";
}
