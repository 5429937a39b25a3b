"""Partitions: one dynamic partition per Datanet, one per closed (or closing) reward epoch.

An epoch's partition key is the lake's key for it, `<datanet>.<epoch>` (`assets.names.
epoch_key`): the same string names the epoch in the Dagster UI, in the epoch tables'
`datanet_epoch` column and in their ledger entries.
"""

import dagster as dg

datanet_partitions = dg.DynamicPartitionsDefinition(name="datanets")
# "wine.0", "wine.1", ... added as epochs close.
datanet_epoch_partitions = dg.DynamicPartitionsDefinition(name="datanet_epochs")
