"""Device simulators: real Modbus TCP servers (and later MQTT devices) driven by device profiles
and scripted scenarios, so the whole system runs and is tested without equipment."""
