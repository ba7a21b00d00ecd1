#!/bin/sh
# Builds the fixture kernel with `make bindeb-pkg`, inside the amd64 build
# root zchroot made (never with the host's packages), from Debian's
# linux-source and with Debian's arm64 cross compiler. The host binds its
# scratch folder on /fixture: kernel-fixture.config and the version in,
# work/ for the tree, out/ for the packages.
set -eu
cd /fixture
jobs=$(cat jobs)
pkgversion=$(cat pkgversion)
rm -rf work out
mkdir work out
tar -C work -xf /usr/src/linux-source-6.12.tar.xz
cd work/linux-source-6.12
set -- ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- CC=aarch64-linux-gnu-gcc-14 \
    HOSTCC=gcc-14 KBUILD_BUILD_USER=zchroot KBUILD_BUILD_HOST=fixture \
    KBUILD_BUILD_TIMESTAMP='1970-01-01' KDEB_PKGVERSION="$pkgversion" \
    KDEB_CHANGELOG_DIST=trixie DPKG_FLAGS=-d
# DPKG_FLAGS=-d: the generated Build-Depends name the target's libssl-dev and
# gcc-aarch64-linux-gnu, which the build does not use (it uses gcc-14's).
KCONFIG_ALLCONFIG=/fixture/kernel-fixture.config make "$@" allnoconfig
# Every value of the fragment must have survived Kconfig's dependencies.
missing=0
while IFS= read -r line; do
    case "$line" in
    CONFIG_*=*)
        grep -qxF "$line" .config || { echo "fixture config: $line did not stick" >&2; missing=1; } ;;
    "# CONFIG_"*" is not set")
        sym=${line#\# }; sym=${sym%% *}
        ! grep -q "^$sym=" .config || { echo "fixture config: $sym is set" >&2; missing=1; } ;;
    esac
done < /fixture/kernel-fixture.config
[ "$missing" = 0 ]
make "$@" -j"$jobs" bindeb-pkg
mv ../*.deb /fixture/out/
make -s "$@" kernelrelease > /fixture/out/kernelrelease
