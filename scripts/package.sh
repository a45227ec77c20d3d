#!/usr/bin/env bash
# Build molt as operators install it, into target/package/:
#   molt-<version>-x86_64-linux-musl   a static binary (no glibc needed)
#   molt_<version>_amd64.deb           that binary, the systemd template units, the man page
#                                       and shell completions (bash, zsh, fish)
# The .deb is assembled with dpkg-deb (what cargo-deb drives) from packaging/: no extra cargo
# tool to build first. Needs the musl target and musl-tools (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
command -v musl-gcc >/dev/null || { echo "musl-gcc is missing: apt-get install musl-tools" >&2; exit 1; }
cargo build --release --quiet --target "$target" -p cli
bin=target/$target/release/molt
file -L "$bin" | grep -Eq 'static(-pie)? linked|statically linked' || { echo "$bin is not static" >&2; exit 1; }
version=$("$bin" --version | awk '{print $2}')
out=target/package
rm -rf "$out" && mkdir -p "$out"
# shipped without debug info (the release profile keeps line tables for backtraces here)
strip -o "$out/molt-$version-x86_64-linux-musl" "$bin"
bin=$out/molt-$version-x86_64-linux-musl
tree=$out/deb
install -D -m 0755 "$bin" "$tree/usr/bin/molt"
for u in packaging/systemd/*; do install -D -m 0644 "$u" "$tree/lib/systemd/system/$(basename "$u")"; done
mkdir -p "$tree/usr/share/man/man1"
"$bin" man | gzip -9n > "$tree/usr/share/man/man1/molt.1.gz"
install -d "$tree/usr/share/bash-completion/completions" "$tree/usr/share/zsh/vendor-completions" "$tree/usr/share/fish/vendor_completions.d"
"$bin" completions bash > "$tree/usr/share/bash-completion/completions/molt"
"$bin" completions zsh > "$tree/usr/share/zsh/vendor-completions/_molt"
"$bin" completions fish > "$tree/usr/share/fish/vendor_completions.d/molt.fish"
install -D -m 0644 README.md "$tree/usr/share/doc/molt/README.md"
install -d "$tree/DEBIAN"
install -m 0755 packaging/debian/postinst packaging/debian/postrm "$tree/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$tree" | cut -f1)
cat > "$tree/DEBIAN/control" <<CONTROL
Package: molt
Version: $version
Architecture: amd64
Maintainer: molt developers <molt@localhost>
Installed-Size: $size
Depends: docker.io | docker-ce | docker-engine
Recommends: docker-compose | docker-compose-plugin
Section: admin
Priority: optional
Description: upgrades self-hosted Docker Compose installations, never half-way
 molt takes a compose product from one release to the next as one journaled run
 (signed manifest, resumable download, staging, images, backup, schema migration,
 health gate) that a crash or a failed health check ends exactly-old or exactly-new.
CONTROL
dpkg-deb --root-owner-group --build "$tree" "$out/molt_${version}_amd64.deb" >/dev/null
rm -rf "$tree"
echo "built $out/molt_${version}_amd64.deb and $out/molt-$version-x86_64-linux-musl"
