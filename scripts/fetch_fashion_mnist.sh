#!/usr/bin/env bash
# Make sure Fashion-MNIST is present: Debian's dataset-fashion-mnist where apt is usable as root,
# else torchvision's download into data/fashion_mnist. Usage: scripts/fetch_fashion_mnist.sh [PYTHON]
set -euo pipefail
py=${1:-.venv/bin/python}
debian=/usr/share/datasets/fashion-mnist
if [ -f "$debian/train-images-idx3-ubyte.gz" ] || [ -d data/fashion_mnist/FashionMNIST/raw ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's dataset-fashion-mnist"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    [ -f "$debian/train-images-idx3-ubyte.gz" ] && exit 0
fi
echo "downloading Fashion-MNIST with torchvision into data/fashion_mnist"
"$py" -c "from torchvision.datasets import FashionMNIST; FashionMNIST('data/fashion_mnist', download=True)"
