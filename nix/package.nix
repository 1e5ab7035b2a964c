# The gpubox CLI built from this repository's Cargo workspace with nixpkgs'
# Rust support. The engine crate's build script compiles `gpubox-init` as a static executable
# (glibc's static libraries) and embeds it, so the one binary carries the PID 1.
# The tests need podman, a Docker engine and a registry, so they are not run
# here; `./scripts/test` runs them.
{ lib, rustPlatform, glibc, src }:
let
  cargoToml = lib.importTOML (src + "/Cargo.toml");
  # Only what the build reads: changing the README or the Nix files must not
  # rebuild gpubox.
  source = lib.cleanSourceWith {
    inherit src;
    filter = path: type:
      let relative = lib.removePrefix (toString src + "/") (toString path); in
      relative == "Cargo.toml" || relative == "Cargo.lock"
      || relative == "crates" || lib.hasPrefix "crates/" relative;
  };
in
rustPlatform.buildRustPackage {
  pname = "gpubox";
  inherit (cargoToml.workspace.package) version;
  src = source;
  cargoLock.lockFile = src + "/Cargo.lock";
  cargoBuildFlags = [ "--package" "gpubox" ];
  buildInputs = [ glibc.static ];
  doCheck = false;
  meta = {
    description = "Build GPU-ready OCI images from Nix closures and local files, without a daemon";
    license = lib.licenses.asl20;
    mainProgram = "gpubox";
    platforms = lib.platforms.linux;
  };
}
