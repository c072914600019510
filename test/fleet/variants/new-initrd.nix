# Another initrd (one more kernel module in it), the same kernel: cheaper to build than another
# kernel and just as much a reason to reboot. `switch-to-configuration boot` makes it the next
# boot's; the exporter and the probes must report a pending reboot until the target reboots.
{
  environment.etc."ndh-variant".text = "new-initrd";
  boot.initrd.kernelModules = [ "dummy" ];
}
