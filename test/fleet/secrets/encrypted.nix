# A secret for the secrets scenario, encrypted at build time with nixpkgs' sops, to the age
# recipient of the targets' fixed test host key (../keys/target-host-ed25519.pub, converted with
# nixpkgs' ssh-to-age, as an admin converts a real host's key for .sops.yaml).
#
# The plaintext is random and made inside the build: it is in no Nix expression, no .drv and no
# output, so the scenario can look for it in every store path and must find it nowhere. The
# output holds the sops file and the plaintext's SHA-256, which the scenario compares with what
# the target decrypted. (The build is not reproducible on purpose: it is built once, on the host,
# and copied into the VMs with their closures.)
{ runCommand, sops, ssh-to-age, label }:
runCommand "ndh-test-secret-${label}" { nativeBuildInputs = [ sops ssh-to-age ]; } ''
  export HOME=$TMPDIR
  recipient=$(ssh-to-age < ${../keys/target-host-ed25519.pub})
  umask 077
  head -c 24 /dev/urandom | base64 > plaintext
  mkdir $out
  sha256sum plaintext | cut -d ' ' -f 1 > $out/plaintext.sha256
  printf '%s\n' "$recipient" > $out/recipient
  sops --encrypt --age "$recipient" --input-type binary --output-type binary plaintext > $out/secret.sops
  rm plaintext
''
