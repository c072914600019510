# A twin's test secrets: for each secret of the host, a sops file with the same key path and
# format holding a random value made inside the build, encrypted with nixpkgs' sops to the age
# recipient of the fleet's TEST ONLY host key (test/fleet/keys/target-host-ed25519.pub, converted
# with ssh-to-age like a real host key for .sops.yaml). Never the host's real sops file, never a
# real key: the twin decrypts them with the test key that the harness writes onto it over the
# backdoor (docs/twins.md, "Secrets"); CI holds no age key.
#
#   pkgs.callPackage ./test-secrets.nix { recipientKey = <ssh ed25519 public key file>;
#                                         secrets = [ { file; key; format; } ... ]; }
#   => a directory with one sops file per secret, named `file`
# The plaintexts are random and made in the build (in no Nix expression, .drv or output); the
# build is not reproducible on purpose, like test/fleet/secrets/encrypted.nix.
{ lib, runCommand, sops, ssh-to-age, recipientKey, secrets }:
let
  placeholder = "@TWIN_TEST_VALUE@";

  # sops-nix looks a yaml/json secret up by its key, nested at each "/"; "" is the whole file.
  nested = key: if key == "" then { twin-test-value = placeholder; }
    else lib.setAttrByPath (lib.splitString "/" key) placeholder;

  plaintext = secret:
    if secret.format == "binary" then placeholder
    else if secret.format == "yaml" || secret.format == "json" then builtins.toJSON (nested secret.key)
    else if secret.format == "dotenv" then "${secret.key}=${placeholder}"
    else throw "twins/test-secrets.nix: sops format ${secret.format} (secret key ${secret.key}) has no test stand-in yet; add one here (docs/twins.md).";

  sopsTypes = {
    binary = "--input-type binary --output-type binary";
    yaml = "--input-type json --output-type yaml";
    json = "--input-type json --output-type json";
    dotenv = "--input-type dotenv --output-type dotenv";
  };

  one = secret: ''
    value=$(head -c 24 /dev/urandom | base64 -w 0)
    printf '%s' ${lib.escapeShellArg (plaintext secret)} | sed "s|${placeholder}|$value|" > plaintext
    sops --encrypt --age "$recipient" ${sopsTypes.${secret.format}} plaintext \
      > "$out"/${lib.escapeShellArg secret.file}
    rm plaintext
  '';
in
runCommand "twin-test-secrets" { nativeBuildInputs = [ sops ssh-to-age ]; } ''
  export HOME=$TMPDIR
  recipient=$(ssh-to-age < ${recipientKey})
  umask 077
  mkdir "$out"
  printf '%s\n' "$recipient" > "$out/recipient"
  ${lib.concatMapStrings one secrets}
''
