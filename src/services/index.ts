/** The homeserver's services, created once per homeserver and handed to the endpoint modules that use them. */
import type { AccountsService } from './accounts.js';
import type { AliasesService } from './aliases.js';
import type { ServiceContext } from './context.js';
import type { DirectoryService } from './directory.js';
import type { KeysService } from './keys.js';
import type { RoomsService } from './rooms.js';
import type { SyncService } from './sync.js';
import type { TimelineService } from './timeline.js';

export interface Services {
  readonly ctx: ServiceContext;
  readonly accounts: AccountsService;
  readonly rooms: RoomsService;
  readonly sync: SyncService;
  readonly timeline: TimelineService;
  readonly aliases: AliasesService;
  readonly directory: DirectoryService;
  readonly keys: KeysService;
}
