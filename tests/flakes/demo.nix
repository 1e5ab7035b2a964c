# The demo image every Nix front end test builds, as a nix2gpu option module:
# the flake-parts flake, the flake calling `gpubox.lib.mkImage` and the plain
# `nix-build` file all use this one, so their specs must be identical.
# `fixtures` is tests/fixtures/closure.nix; `registry` is HOST:PORT of a test
# registry on 127.0.0.1.
{ fixtures, registry }:
{
  # Unique among the tests' podman images; the flake attribute stays `demo`.
  name = "gpubox-e2e-nix-demo";
  systemPackages = [ fixtures.busybox fixtures.hello ];
  extraEnv.GREETING = "hello from a nix2gpu flake";
  labels."org.example.team" = "ml";
  exposedPorts."8080/tcp" = { };
  user = "dev";
  extraStartupScript = "export MODE=prod";
  services.ticker.process.argv = [ "/bin/sh" "-c" "echo ticker says $MODE; exec sleep 1000" ];
  services.second = {
    process.argv = [ "/bin/sh" "-c" "echo second starts; exec sleep 1000" ];
    after = [ "ticker" ];
  };
  cmd = [ "/bin/sh" "-c" "sleep 2; hello; echo main runs as $(id -u)" ];
  registries = [ "${registry}/team" ];
}
