"""The station on the plant network: MQTT result publishing and the OPC UA server.

``messages`` (topics and JSON payloads, pure), ``diskqueue`` (the bounded on-disk outbox), ``mqtt``
(the publisher), ``opcua`` (the server). They see results as plain facts handed in by the station
layer, so nothing here imports the station; docs/plant.md describes the topics and the address space.
"""
