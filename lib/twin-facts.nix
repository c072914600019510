# What the harness needs to know to boot twins (harness/twins/fleet_spec.py), read from the
# evaluated hosts. Builtins only: the tests evaluate it over the real hosts with NixOS stand-ins.
#
#   import ./lib/twin-facts.nix nixosConfigurations
#   => { <Host> = { address; standIn; deployable; cache; cacheUrl; cachePublicKeyFile; deployTrust;
#                   memoryMiB; targetHost; sshUser; confirmTimeout; acme; }; ... }
#
#   address, standIn  the twin's address on the VLAN (homelab.twin.addresses, lib/twin-addresses.nix)
#   deployable        the host has the deploy user, so it is a deploy-rs node
#   cache             the host serves the fleet's binary cache (homelab.services.harmonia.enable)
#   cacheUrl          where the other twins reach that cache: Harmonia's port at the twin's
#                     address, or https://<serverName> behind the nginx front; null without a cache
#   cachePublicKeyFile  where the cache host writes its generated key's public half; null when
#                     it generates none (generateKey = false) or serves no cache
#   deployTrust       homelab.users.deploy.trust: whether the deploy user may import unsigned paths
#   memoryMiB         the twin's virtualisation.memorySize
#   targetHost        homelab.deploy.targetHost, the name or address deploy-rs connects to
#   sshUser, confirmTimeout  homelab.deploy's: who deploy-rs logs in as, how long magic rollback waits
#   acme              the twin requests ACME certificates (security.acme.certs), from the twins'
#                     ACME stand-in on the deployer (twins/acme.nix, twins/pebble.nix)
nixosConfigurations:
builtins.mapAttrs
  (_: nixos:
    let
      twin = nixos.config.virtualisation.vmVariant;
      addresses = nixos.config.homelab.twin.addresses;
      self = addresses.${nixos.config.networking.hostName};
      harmonia = nixos.config.homelab.services.harmonia or { enable = false; };
    in
    {
      inherit (self) address standIn;
      deployable = nixos.config.homelab.users.deploy.enable or false;
      cache = harmonia.enable;
      cacheUrl =
        if !harmonia.enable then null
        else if harmonia.nginx.enable then "https://${harmonia.nginx.serverName}"
        else "http://${self.address}:${toString harmonia.port}";
      cachePublicKeyFile = if harmonia.enable && harmonia.generateKey then harmonia.publicKeyFile else null;
      deployTrust = nixos.config.homelab.users.deploy.trust or null;
      memoryMiB = twin.virtualisation.memorySize;
      inherit (nixos.config.homelab.deploy) targetHost sshUser confirmTimeout;
      acme = twin.security.acme.certs != { };
    })
  nixosConfigurations
