"""lab.box.LabBox: the kind-dependent fields, read through accessors that name the box when it has none (pure)."""
from __future__ import annotations

import pytest

from lab import LabError
from lab.box import LabBox

CTR = LabBox("ctr1", "container", "198.18.5.10", "2001:db8:18:5::10", "02:42:c6:12:05:0a", (1093,),
             container="vbl-ab12-ctr1", network="vbl-ab12-net", tls_port=8443)
VM = LabBox("vm1", "vm", "198.18.5.20", "2001:db8:18:5::20", "06:ab:12:00:00:01", (1093,),
            netns="vbl-ab12-vm1", link="vbl12v1")


def test_a_container_box_gives_its_container_network_and_tls_port():
    assert (CTR.container_name, CTR.container_network, CTR.container_tls_port) == ("vbl-ab12-ctr1", "vbl-ab12-net", 8443)


def test_a_vm_box_gives_its_namespace_and_link():
    assert (VM.vm_netns, VM.vm_link) == ("vbl-ab12-vm1", "vbl12v1")


@pytest.mark.parametrize("box, accessor, message", [
    pytest.param(VM, "container_name", "box vm1 is a vm: it has no container", id="vm-container"),
    pytest.param(VM, "container_network", "box vm1 is a vm: it has no Docker network", id="vm-network"),
    pytest.param(VM, "container_tls_port", "box vm1 is a vm: it has no TLS port", id="vm-tls-port"),
    pytest.param(CTR, "vm_netns", "box ctr1 is a container: it has no namespace", id="container-netns"),
    pytest.param(CTR, "vm_link", "box ctr1 is a container: it has no VM link", id="container-link"),
])
def test_a_field_the_kind_has_not_is_a_lab_error_naming_the_box(box, accessor, message):
    with pytest.raises(LabError) as info:
        getattr(box, accessor)
    assert str(info.value) == message
