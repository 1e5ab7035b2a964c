# A program packaged with Nix: `greet`, a shell script whose interpreter and tools
# come from the store, so the image needs nothing of the build machine.
#
# Written without nixpkgs so it builds offline and in the tests: the shell is a
# static busybox taken into the store from this machine (`busybox` argument,
# Debian's busybox-static by default). With nixpkgs you would write the same as
#   pkgs.writeShellApplication { name = "greet"; runtimeInputs = [ pkgs.coreutils ]; text = ...; }
{ busybox ? /usr/bin/busybox, system ? builtins.currentSystem }:
let
  # The build machine's static busybox, copied into the store as a plain input (a
  # folder holding only it, so it is still called `busybox`, the name it answers
  # to): a builder that works inside Nix's sandbox.
  busyboxStatic = builtins.path {
    path = dirOf busybox;
    name = "busybox-static";
    filter = path: _type: baseNameOf path == baseNameOf busybox;
  };
  shell = derivation {
    name = "busybox-shell-1.36";
    inherit system;
    builder = "${busyboxStatic}/${baseNameOf busybox}";
    args = [ "sh" "-c" ''
      $builder mkdir -p $out/bin
      $builder cp $builder $out/bin/busybox
      for tool in sh cat date uname wc; do $builder ln -s busybox $out/bin/$tool; done
    '' ];
  };
in
{
  greet = derivation {
    name = "greet-1.0";
    inherit system;
    builder = "${shell}/bin/sh";
    args = [ "-c" ''
      ${shell}/bin/busybox mkdir -p $out/bin $out/share/greet
      echo "hello from a Nix-built script" > $out/share/greet/message
      cat > $out/bin/greet <<EOF_SCRIPT
      #!${shell}/bin/sh
      # Every program it runs is named by its store path: no PATH needed.
      ${shell}/bin/cat $out/share/greet/message
      echo "kernel: \$(${shell}/bin/uname -s), args: \$#"
      EOF_SCRIPT
      ${shell}/bin/busybox chmod 0755 $out/bin/greet
    '' ];
  };
}
