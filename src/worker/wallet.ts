import { openDB } from 'idb'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import type { Hex } from 'viem'

const DB_NAME = 'tabtrain-wallet'
const STORE = 'keys'
const BURNER_KEY = 'burner'

/**
 * The burner wallet: a private key generated in the page and kept in this origin's IndexedDB, so the
 * same address earns across visits without any extension. It signs claims only; anything of value
 * should move to a real wallet.
 */
export async function loadBurnerAccount(): Promise<PrivateKeyAccount> {
  const db = await openDB(DB_NAME, 1, {
    upgrade(database) {
      database.createObjectStore(STORE)
    },
  })
  try {
    let key = (await db.get(STORE, BURNER_KEY)) as Hex | undefined
    if (!key) {
      key = generatePrivateKey()
      // `add` fails if another tab created a key meanwhile; then that one wins.
      try {
        await db.add(STORE, key, BURNER_KEY)
      } catch {
        key = (await db.get(STORE, BURNER_KEY)) as Hex
      }
    }
    return privateKeyToAccount(key)
  } finally {
    db.close()
  }
}
