# The micro image, built by Nix: the same layout and guest scripts as the Debian recipe of
# harness/images/micro.py (vmlinuz, initrd, disk-base.qcow2, manifest.json, guest/), from
# nixpkgs' kernel, static busybox and static bash. The harness uses it when NDH_MICRO_IMAGE
# names it (the flake's apps and dev shell set that).
{ lib
, stdenv
, runCommand
, pkgsStatic
, linuxPackages
, kmod
, xz
, zstd
, cpio
, e2fsprogs
, qemu
  # The guest scripts, the same files the Debian recipe uses.
, guest ? ../harness/images/micro_guest
}:

let
  kernel = linuxPackages.kernel;
  # virtio transport, the backdoor console, VLAN NICs, the persistent disk and its filesystem
  # (harness/images/micro.py MODULES, plus ext4, which Debian's cloud kernel has built in).
  rootModules = [ "virtio_pci" "virtio_console" "virtio_net" "virtio_blk" "ext4" ];
  # ext4's checksum driver where it is a module of its own; absent from some kernels.
  optionalModules = [ "crc32c_generic" ];
  diskSizeMB = 64;
in
runCommand "ndh-micro-image"
{
  nativeBuildInputs = [ kmod xz zstd cpio e2fsprogs qemu ];  # qemu for qemu-img
  passthru = { inherit kernel; };
  meta.description = "nixos-deploy-harness micro image: kernel, busybox+bash initramfs, disk template";
}
  ''
    version=${kernel.modDirVersion}
    tree=$TMPDIR/tree
    mkdir -p $out $tree/{bin,etc,proc,sys,dev,run,tmp,root,persist,lib/modules}

    cp ${kernel}/${stdenv.hostPlatform.linux-kernel.target} $out/vmlinuz

    cp ${pkgsStatic.busybox}/bin/busybox $tree/bin/busybox
    cp ${pkgsStatic.bash}/bin/bash $tree/bin/bash
    for applet in $($tree/bin/busybox --list); do
      [ -e $tree/bin/$applet ] || ln -s busybox $tree/bin/$applet
    done
    cp ${guest}/init $tree/init
    for name in inittab backdoor rc.shutdown; do cp ${guest}/$name $tree/etc/$name; done
    chmod -R u+w $tree

    # Each root module and its dependencies in load order (modprobe prints `insmod <file>`
    # lines, dependencies first; `builtin <name>` for what the kernel has built in), stored
    # uncompressed as /lib/modules/<name>.ko for the init's plain insmod.
    : > $tree/etc/modules.load
    depends() {
      modprobe --config /dev/null -d ${kernel} -S "$version" --show-depends "$1"
    }
    for module in ${lib.concatStringsSep " " rootModules} ${lib.concatStringsSep " " optionalModules}; do
      case " ${lib.concatStringsSep " " optionalModules} " in
        *" $module "*) lines=$(depends "$module" || true) ;;
        *) lines=$(depends "$module") ;;
      esac
      echo "$lines" | while read -r kind file; do
        [ "$kind" = insmod ] || continue
        name=$(basename "$file"); name=''${name%%.ko*}
        grep -qx "$name" $tree/etc/modules.load && continue
        case "$file" in
          *.ko.xz) xz -dc "$file" > $tree/lib/modules/$name.ko ;;
          *.ko.zst) zstd -qdc "$file" > $tree/lib/modules/$name.ko ;;
          *) cp "$file" $tree/lib/modules/$name.ko ;;
        esac
        echo "$name" >> $tree/etc/modules.load
      done
    done

    # Uncompressed (the kernel unpacks it fastest) and with fixed times and order, as the
    # Debian recipe writes it.
    find $tree -exec touch -h -d @0 {} +
    (cd $tree && find . -mindepth 1 | sort | sed 's|^\./||' > $TMPDIR/files &&
      { echo .; cat $TMPDIR/files; } |
      cpio --quiet -o -H newc --reproducible -R 0:0 > $out/initrd)

    truncate -s ${toString diskSizeMB}M $TMPDIR/disk.raw
    mke2fs -q -F -t ext4 -L persist $TMPDIR/disk.raw
    qemu-img convert -q -O qcow2 $TMPDIR/disk.raw $out/disk-base.qcow2

    cp -r ${guest} $out/guest
    cat > $out/manifest.json <<JSON
    {"inputs": {"recipe": "nix", "kernel_version": "$version", "kernel": "${kernel}",
                "busybox": "${pkgsStatic.busybox}", "bash": "${pkgsStatic.bash}"},
     "bios": null}
    JSON
  ''
