# Provider settings shared by the development VM (Vagrantfile) and the
# Kubernetes nodes (packaging/vagrant/k8s/Vagrantfile): libvirt or
# VirtualBox, with nested virtualization where the provider can give it.
def cocoon_providers(config, cpus:, memory:)
  config.vm.provider :libvirt do |lv|
    lv.cpus = cpus
    lv.memory = memory
    lv.cpu_mode = "host-passthrough"
    lv.nested = true
    lv.machine_virtual_size = 40 # GiB: the guest kernel's source and build
  end

  config.vm.provider :virtualbox do |vb|
    vb.cpus = cpus
    vb.memory = memory
    vb.customize ["modifyvm", :id, "--nested-hw-virt", "on"]
  end
end
