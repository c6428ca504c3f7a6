// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title TabTrain's test token
/// @notice Pays for jobs and is staked by contributors. Freely mintable by its owner because it only
/// exists on test and local chains; a production deployment would point the other contracts at a real
/// token instead.
contract TabToken is ERC20, Ownable {
    constructor(address initialOwner) ERC20("TabTrain Test Token", "TTT") Ownable(initialOwner) {}

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
