"""Collectors: the only code that talks to devices (pymodbus here; aiomqtt for MQTT devices)."""
