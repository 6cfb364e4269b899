# Sourced by deploy/build-wolfssl-sp.sh and deploy/build-nghttp2.sh: fetch and unpack a Debian
# source package (Debian's patches applied) of the version installed, with the tools to build it.
#
#   debsrc_prepare TOOL...           add a deb-src entry if apt has none, install missing TOOLs
#   debsrc_unpack PKG VERSION DIR    apt-get source PKG=VERSION into the current directory and
#                                    unpack it (dpkg-source -x applies Debian's patches) into DIR
# Both need root (or sudo) only the first time: for the deb-src entry and missing tools.
# The caller defines say() and die() and sets -euo pipefail.

debsrc_sudo=""
[ "$(id -u)" -ne 0 ] && debsrc_sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

# $1: a "source=version" apt must be able to fetch; the rest: build tools (Debian package names).
debsrc_prepare() {
	local want=$1 src_list=/etc/apt/sources.list.d/debian-src.sources p
	shift
	# Debian 12 lists binary packages only: add the matching deb-src stanza once.
	if ! apt-get source --print-uris "$want" >/dev/null 2>&1; then
		[ -f /etc/apt/sources.list.d/debian.sources ] ||
			die "no /etc/apt/sources.list.d/debian.sources to derive a deb-src entry from"
		say "adding $src_list (deb-src of the configured Debian mirrors)"
		sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
			$debsrc_sudo tee "$src_list" >/dev/null
		$debsrc_sudo apt-get update -q >&2
	fi
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		say "installing ${missing[*]}"
		$debsrc_sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
	fi
}

debsrc_unpack() {
	local pkg=$1 version=$2 dir=$3
	say "fetching the source of $pkg $version"
	apt-get source --download-only "$pkg=$version" >fetch.log 2>&1 ||
		die "apt-get source $pkg=$version failed: $(tail -3 fetch.log)"
	dpkg-source -x ./*.dsc "$dir" >extract.log 2>&1 ||
		die "dpkg-source -x failed: $(tail -3 extract.log)"
}
