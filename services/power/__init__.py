"""Power control drivers: one small async interface (services/power/driver.py), IPMI through ipmitool
(ipmi.py) and Redfish through aiohttp (redfish.py), and the fleet runner (fleet.py) that calls many BMCs with
bounded concurrency and a timeout each."""
