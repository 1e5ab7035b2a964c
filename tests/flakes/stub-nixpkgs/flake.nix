# A stand-in for nixpkgs, for testing the template offline (there is no nixpkgs
# here): `lib` from the pinned nixpkgs lib, a few packages from
# tests/fixtures/closure.nix, and just enough of callPackage and rustPlatform to
# evaluate nix/package.nix, whose buildRustPackage here copies in the prebuilt
# gpubox instead of compiling it. @NIXPKGS_LIB@ is the pinned lib's folder.
{
  inputs.nixpkgs-lib.url = "path:@NIXPKGS_LIB@";

  outputs = { nixpkgs-lib, ... }:
    let
      inherit (nixpkgs-lib) lib;
      system = "x86_64-linux";
      fixtures = import ./closure.nix { inherit system; };
      packages = {
        inherit lib;
        hello = fixtures.hello;
        bashInteractive = fixtures.busybox;
        # No program of its own, so none clashes with busybox's.
        coreutils = fixtures.greeting;
        glibc.static = fixtures.greeting;
        callPackage = file: overrides:
          let function = import file;
          in function (builtins.intersectAttrs (builtins.functionArgs function) packages // overrides);
        rustPlatform.buildRustPackage = attrs:
          assert attrs.pname == "gpubox" && attrs.cargoLock ? lockFile;
          derivation {
            name = "${attrs.pname}-${attrs.version}";
            inherit system;
            builder = "/bin/sh";
            args = [ "-c" "mkdir -p $out/bin && cp ${./gpubox} $out/bin/gpubox" ];
            PATH = "/usr/bin:/bin";
          } // { inherit (attrs) meta; };
      };
    in
    {
      # Newer Nix marks every flake input so; Nix 2.8 (these machines') does
      # not, and flake-parts' `pkgs` (from `inputs'.nixpkgs`) wants the mark.
      _type = "flake";
      inherit lib;
      legacyPackages.${system} = packages;
    };
}
