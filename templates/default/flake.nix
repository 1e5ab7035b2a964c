{
  description = "A GPU container image built with gpubox";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    flake-parts = {
      url = "github:hercules-ci/flake-parts";
      inputs.nixpkgs-lib.follows = "nixpkgs";
    };
    gpubox = {
      # Where you got gpubox from.
      url = "git+https://example.invalid/gpubox";
      inputs.nixpkgs-lib.follows = "nixpkgs";
      inputs.flake-parts.follows = "flake-parts";
    };
  };

  outputs = inputs@{ flake-parts, gpubox, ... }:
    flake-parts.lib.mkFlake { inherit inputs; } {
      imports = [ gpubox.flakeModules.default ];
      systems = [ "x86_64-linux" "aarch64-linux" ];

      perSystem = { pkgs, ... }: {
        # `nix build .#hello` checks the image and writes its spec;
        # `nix run .#hello.copyToPodman`, `.copyToDockerDaemon`,
        # `.copyTo -- oci-archive:hello.tar` or `.copyToRegistry` ships it.
        gpubox.hello = {
          tag = "latest";
          systemPackages = [ pkgs.hello pkgs.bashInteractive pkgs.coreutils ];
          extraEnv.GREETING = "hello from a gpubox image";
          cmd = [ "hello" ];

          # A supervised service, an SSH login with your key, CUDA libraries:
          # services.web.argv = [ "${pkgs.python3}/bin/python3" "-m" "http.server" "8000" ];
          # ssh = { enable = true; authorizedKeys = [ "ssh-ed25519 AAAA... you@host" ]; };
          # systemPackages = [ pkgs.openssh ];
          # cuda.packages = pkgs.cudaPackages_12_4;
          # registries = [ "ghcr.io/my-org" ];
        };
      };
    };
}
